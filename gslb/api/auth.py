"""Who is calling: the bearer token of a request, checked against the accepted tokens.

Adapter layer (aiohttp requests), on top of `gslb.api.tokens`. A missing or unknown token
is a 401 (with `WWW-Authenticate: Bearer`), and so is an `Authorization` header that is not
printable ASCII or is over 1 kB; a known token without the role is a 403. The
tokens file is re-read when it changes (checked at most once a second), so a token created
with `gslb token create` works without a restart; a broken file keeps the previous tokens
and logs one error. Neither the token nor its hash is ever logged or put in a response.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gslb.api.inputs import RequestProblem
from gslb.api.tokens import Role, Token, TokenSources, TokenTable, load_tokens, sendable
from gslb.errors import ConfigError
from gslb.logs import counted

log = logging.getLogger(__name__)

RECHECK_S = 1.0
MAX_AUTHORIZATION = 1024  # tokens are 48 characters; configured secrets rarely longer than 100


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: the token's name and role, and where it came from."""

    name: str
    role: Role
    source: str


class Tokens:
    """The accepted tokens, reloaded when the tokens file changes."""

    def __init__(
        self,
        tokens_file: Path | None,
        env: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = tokens_file
        self._env = dict(os.environ if env is None else env)
        self._clock = clock
        self.table, self.sources = load_tokens(tokens_file, self._env)
        self._stamp = self._file_stamp()
        self._checked = clock()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._file is None:
            return None
        try:
            st = self._file.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> TokenTable:
        now = self._clock()
        if self._file is not None and now - self._checked >= RECHECK_S:
            self._checked = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.table, self.sources = load_tokens(self._file, self._env)
                except ConfigError as e:
                    log.error("api tokens not reloaded; the previous tokens stay in force:\n%s", e)
                else:
                    log.info("api tokens reloaded from %s: %s", self._file, counted(len(self.table), "token"))
        return self.table

    def describe(self) -> str:
        return describe(self.sources, len(self.table))


def describe(sources: TokenSources, count: int) -> str:
    """Where the tokens come from, for one log line (paths and counts, never tokens)."""
    if sources.local_file is not None:
        return f"one operate token in {sources.local_file} (the CLI reads it from there)"
    parts = []
    if sources.tokens_file is not None:
        parts.append(f"{count - sources.from_env} from {sources.tokens_file}")
    if sources.from_env:
        parts.append(f"{sources.from_env} from $GSLB_API_TOKENS")
    return "tokens: " + ", ".join(parts)


def bearer(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer TOKEN` (None: no such header); a 401 RequestProblem
    when the header cannot hold a token. aiohttp hands header bytes that are not UTF-8 over
    as lone surrogates (surrogateescape): those are refused here, before anything hashes,
    logs or quotes them."""
    header = request.headers.get("Authorization", "")
    if len(header) > MAX_AUTHORIZATION or not sendable(header.replace(" ", "")):
        # Say what is wrong, never what was sent: it may be a token.
        raise RequestProblem(
            401, "unauthorized", "malformed Authorization header: expected Bearer <token> in printable ASCII"
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(request: web.Request, tokens: TokenTable, needed: Role) -> Caller:
    """The caller, or a 401/403 RequestProblem."""
    secret = bearer(request)
    source = request.remote or ""
    if secret is None:
        raise RequestProblem(401, "unauthorized", "missing token: send Authorization: Bearer <token>")
    token: Token | None = tokens.find(secret)
    if token is None:
        raise RequestProblem(401, "unauthorized", "invalid token")
    if not token.role.allows(needed):
        raise RequestProblem(
            403,
            "forbidden",
            f'token "{token.name}" has the {token.role.value} role; this needs {needed.value}',
        )
    return Caller(token.name, token.role, source)
