"""Api tokens: roles, hashing, the tokens file and env var, and the embedded per-user token.

Standard library only, so the CLI can use it without importing aiohttp. A token is a random
string handed to a person once (`gslb token create`); the server only ever keeps its SHA-256
(the tokens are 256-bit random values, so an unsalted hash is as strong as the token) and
compares digests with `hmac.compare_digest`. Nothing here logs or returns a token except
`new_token`, and no error message quotes one.

Sources, merged: `api.tokens_file` (lines of `NAME ROLE sha256:HEX`) and the `GSLB_API_TOKENS`
environment variable (`NAME:ROLE:SECRET` entries separated by commas or whitespace, where
SECRET is the token itself, printable ASCII as a header can carry it, or `sha256:HEX`). With
neither, the server uses the per-user token file `local_token_path()` (created with mode
0600 when missing) as one operate token, so the embedded default is never open without a
token and the CLI finds it by itself. A file that is not UTF-8 is a ConfigError with its
line, never a traceback.

Client side (`find_client_token`): the CLI sends `--token-file FILE`, else `$GSLB_API_TOKEN`,
else the per-user file, and keeps where it came from (`ClientToken`) so that a 401 can say so.
It never reads `api.tokens_file`: that holds hashes, and a hash cannot be sent.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gslb.errors import ConfigError

log = logging.getLogger(__name__)

ENV_TOKENS = "GSLB_API_TOKENS"
"""Server side: extra tokens, `NAME:ROLE:SECRET[,NAME:ROLE:SECRET...]`."""

ENV_TOKEN = "GSLB_API_TOKEN"
"""Client side: the token the CLI sends."""

LOCAL_TOKEN_NAME = "local"
TOKEN_PREFIX = "gslb_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


class Role(enum.Enum):
    READ = "read"
    OPERATE = "operate"

    def allows(self, needed: Role) -> bool:
        """`operate` can do everything `read` can."""
        return self is Role.OPERATE or needed is Role.READ


@dataclass(frozen=True, slots=True)
class Token:
    """One accepted token: who it is, what it may do, and the SHA-256 of the secret."""

    name: str
    role: Role
    digest: bytes = b""


def hash_token(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_line(name: str, role: Role, secret: str) -> str:
    """The tokens-file line for `secret` (the secret itself is not in it)."""
    return f"{name} {role.value} sha256:{hash_token(secret).hex()}"


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def sendable(secret: str) -> bool:
    """Whether `secret` can travel in an HTTP header as it is: printable ASCII, no spaces."""
    return secret.isascii() and secret.isprintable() and " " not in secret


def read_text(path: Path) -> str:
    """A tokens or token file as text; ConfigError (with the line) when it is not UTF-8.
    OSError propagates."""
    raw = path.read_bytes()
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(str(path), [f"not UTF-8 text (byte 0x{raw[e.start]:02x}), line {line}"]) from None


class TokenTable:
    """The accepted tokens; `find` compares the digest of what was sent with every one of them."""

    def __init__(self, tokens: Iterable[Token]) -> None:
        self.tokens = tuple(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def find(self, secret: str) -> Token | None:
        digest = hash_token(secret)
        found = None
        for token in self.tokens:  # no early exit: the time taken does not depend on which one matched
            if hmac.compare_digest(digest, token.digest) and found is None:
                found = token
        return found


def _role(text: str) -> Role | None:
    try:
        return Role(text)
    except ValueError:
        return None


def _digest(secret: str) -> bytes:
    match = _HASH.match(secret)
    return bytes.fromhex(match.group(1)) if match else hash_token(secret)


def parse_tokens_file(text: str, source: str) -> tuple[Token, ...]:
    """`NAME ROLE sha256:HEX` per line (`#` comments); raises ConfigError listing every problem."""
    problems: list[str] = []
    tokens: dict[str, Token] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        parts = line.split()
        if len(parts) != 3:
            problems.append(f"expected NAME ROLE sha256:HEX, got {len(parts)} fields, {where}")
            continue
        name, role_text, secret = parts
        role = _role(role_text)
        if not valid_name(name):
            problems.append(f'"{name}" is not a token name (letters, digits, "_.-"), {where}')
        elif role is None:
            problems.append(f'role "{role_text}" is not one of: read, operate, {where}')
        elif not _HASH.match(secret):
            # Never quote the value: it may be a token pasted by mistake.
            problems.append(f"the third field is not sha256:<64 hex digits>, {where}")
        elif name in tokens:
            problems.append(f'token name "{name}" is used twice, {where}')
        else:
            tokens[name] = Token(name, role, _digest(secret))
    if problems:
        raise ConfigError(source, problems)
    return tuple(tokens.values())


def parse_env_tokens(text: str) -> tuple[Token, ...]:
    """`NAME:ROLE:SECRET` entries separated by commas or whitespace; raises ConfigError."""
    problems: list[str] = []
    tokens: dict[str, Token] = {}
    for index, entry in enumerate(re.split(r"[,\s]+", text.strip()), start=1):
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        role_text, _, secret = rest.partition(":")
        role = _role(role_text)
        where = f"entry {index}"
        if not valid_name(name):
            problems.append(f"{where}: expected NAME:ROLE:SECRET with a name of letters, digits, '_.-'")
        elif role is None:
            problems.append(f'{where} ("{name}"): role "{role_text}" is not one of: read, operate')
        elif len(secret) < 16:
            problems.append(f'{where} ("{name}"): the secret is shorter than 16 characters')
        elif not sendable(secret):
            # Never quote the value: it is a secret.
            problems.append(f'{where} ("{name}"): the secret is not printable ASCII (it travels in a header)')
        elif name in tokens:
            problems.append(f'{where}: token name "{name}" is used twice')
        else:
            tokens[name] = Token(name, role, _digest(secret))
    if problems:
        raise ConfigError(ENV_TOKENS, problems)
    return tuple(tokens.values())


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Per-user state folder: `$XDG_STATE_HOME/gslb`, else `~/.local/state/gslb` (as gslb.runtime)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gslb"


def local_token_path(env: Mapping[str, str] | None = None) -> Path:
    """Where `gslb serve` keeps the embedded operate token and where the CLI looks for it."""
    return state_dir(env) / "api-token"


def read_token_file(path: Path) -> str:
    """The token in a client token file (its first non-empty line); raises ConfigError."""
    try:
        text = read_text(path)
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the token file: {e.strerror}"]) from None
    for line in text.splitlines():
        if line.strip():
            if not sendable(line.strip()):
                raise ConfigError(str(path), ["the token is not printable ASCII (it travels in a header)"])
            return line.strip()
    raise ConfigError(str(path), ["the token file is empty"])


class TokenOrigin(enum.Enum):
    """Where the CLI found the token it sends (in order of precedence)."""

    FLAG = "--token-file"
    ENV = ENV_TOKEN
    LOCAL = "local"  # the per-user file `gslb serve` creates in embedded mode
    GIVEN = "given"  # handed to ApiClient by code
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ClientToken:
    """The token the CLI sends and where it came from, so that a 401 can say which one the
    api refused and what else there is. The CLI never reads `api.tokens_file`: it holds only
    hashes, and a hash cannot be sent."""

    secret: str | None = field(repr=False)
    origin: TokenOrigin
    path: Path | None = None  # FLAG and LOCAL: the file read (LOCAL and NONE: where it was looked for)

    def where(self) -> str:
        """`--token-file /etc/gslb/token`, `GSLB_API_TOKEN`, `~/.local/state/gslb/api-token`."""
        if self.origin is TokenOrigin.FLAG:
            return f"--token-file {display_path(self.path)}"
        if self.origin is TokenOrigin.ENV:
            return ENV_TOKEN
        if self.origin is TokenOrigin.LOCAL:
            return display_path(self.path)
        return "the caller"


def display_path(path: Path | None) -> str:
    """A path as people type it: `~/...` under the home folder."""
    if path is None:
        return "-"
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def find_client_token(token_file: str | None, env: Mapping[str, str] | None = None) -> ClientToken:
    """The token the CLI sends: `--token-file`, else `$GSLB_API_TOKEN`, else the per-user file
    of embedded mode, else none. ConfigError for a file that cannot be read or a token that
    cannot travel in a header (never quoting it)."""
    env = os.environ if env is None else env
    if token_file:
        path = Path(token_file).expanduser()
        return ClientToken(read_token_file(path), TokenOrigin.FLAG, path)
    token = env.get(ENV_TOKEN, "").strip()
    if token:
        if not sendable(token):
            raise ConfigError(ENV_TOKEN, ["the token is not printable ASCII (it travels in a header)"])
        return ClientToken(token, TokenOrigin.ENV)
    local = local_token_path(env)
    if local.is_file():
        return ClientToken(read_token_file(local), TokenOrigin.LOCAL, local)
    return ClientToken(None, TokenOrigin.NONE, local)


def ensure_local_token(path: Path) -> tuple[str, bool]:
    """The token in `path`, creating it (mode 0600, folder 0700) when missing; (token, created)."""
    try:
        return _read_private(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = new_token()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_private(path), False
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret, True


def _read_private(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users; setting its mode to 0600", path)
        path.chmod(0o600)
    return read_token_file(path)


@dataclass(frozen=True, slots=True)
class TokenSources:
    """Where the server's tokens came from (for one log line; never the tokens themselves)."""

    tokens_file: Path | None
    from_env: int
    local_file: Path | None


def load_tokens(
    tokens_file: Path | None, env: Mapping[str, str] | None = None
) -> tuple[TokenTable, TokenSources]:
    """Every configured token; with none configured, the per-user operate token (created if missing)."""
    env = os.environ if env is None else env
    tokens: list[Token] = []
    if tokens_file is not None:
        try:
            text = read_text(tokens_file)
        except OSError as e:
            raise ConfigError(str(tokens_file), [f"api.tokens_file cannot be read: {e.strerror}"]) from None
        tokens.extend(parse_tokens_file(text, str(tokens_file)))
    env_tokens = parse_env_tokens(env[ENV_TOKENS]) if env.get(ENV_TOKENS, "").strip() else ()
    names = {t.name for t in tokens}
    clash = sorted(names & {t.name for t in env_tokens})
    if clash:
        raise ConfigError(ENV_TOKENS, [f'token name "{n}" is also in {tokens_file}' for n in clash])
    tokens.extend(env_tokens)
    local: Path | None = None
    if tokens_file is None and not env_tokens:
        local = local_token_path(env)
        secret, _ = ensure_local_token(local)
        tokens.append(Token(LOCAL_TOKEN_NAME, Role.OPERATE, hash_token(secret)))
    return TokenTable(tokens), TokenSources(tokens_file, len(env_tokens), local)


def append_token_line(path: Path, line: str) -> None:
    """Append one hashed line to a tokens file (created 0600 when missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(line + "\n")
