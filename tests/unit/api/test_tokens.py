"""Api tokens: hashing, roles, the tokens file, the env var and the embedded per-user token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gslb.api.tokens import (
    ENV_TOKENS,
    LOCAL_TOKEN_NAME,
    Role,
    Token,
    TokenTable,
    append_token_line,
    ensure_local_token,
    hash_token,
    load_tokens,
    local_token_path,
    new_token,
    parse_env_tokens,
    parse_tokens_file,
    token_line,
)
from gslb.errors import ConfigError

SECRET = "gslb_" + "s" * 43


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        (Role.READ, Role.READ, True),
        (Role.READ, Role.OPERATE, False),
        (Role.OPERATE, Role.READ, True),
        (Role.OPERATE, Role.OPERATE, True),
    ],
    ids=["read-read", "read-operate", "operate-read", "operate-operate"],
)
def test_operate_can_read_but_read_cannot_operate(role: Role, needed: Role, allowed: bool) -> None:
    assert role.allows(needed) is allowed


def test_new_tokens_are_random_and_long() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith("gslb_") and len(t) >= 40 for t in tokens)


def test_the_file_line_holds_the_hash_never_the_token() -> None:
    line = token_line("alice", Role.OPERATE, SECRET)
    assert SECRET not in line
    assert line == f"alice operate sha256:{hash_token(SECRET).hex()}"
    (token,) = parse_tokens_file(line, "tokens")
    assert token == Token("alice", Role.OPERATE, hash_token(SECRET))


def test_table_finds_by_digest() -> None:
    table = TokenTable(
        [Token("a", Role.READ, hash_token("x" * 20)), Token("b", Role.OPERATE, hash_token(SECRET))]
    )
    found = table.find(SECRET)
    assert found is not None and found.name == "b"
    assert table.find("wrong" * 5) is None
    assert table.find("") is None


def test_tokens_file_comments_and_blank_lines() -> None:
    text = f"""
# ops team
alice operate sha256:{"a" * 64}   # on call

bob read sha256:{"b" * 64}
"""
    tokens = parse_tokens_file(text, "tokens.txt")
    assert [(t.name, t.role) for t in tokens] == [("alice", Role.OPERATE), ("bob", Role.READ)]
    assert tokens[0].digest == bytes.fromhex("a" * 64)


def test_tokens_file_lists_every_problem_with_its_line_and_never_quotes_a_secret() -> None:
    text = "\n".join(
        [
            f"alice operate sha256:{'a' * 64}",
            "bob read",  # 2: two fields
            f"carol admin sha256:{'c' * 64}",  # 3: unknown role
            f"dave read {SECRET}",  # 4: a token pasted instead of its hash
            f"alice read sha256:{'d' * 64}",  # 5: name used twice
            f"bad/name read sha256:{'e' * 64}",  # 6: bad name
        ]
    )
    with pytest.raises(ConfigError) as info:
        parse_tokens_file(text, "tokens.txt")
    problems = info.value.problems
    assert len(problems) == 5
    assert [p.rsplit("line ", 1)[1] for p in problems] == ["2", "3", "4", "5", "6"]
    assert 'role "admin"' in problems[1]
    assert "sha256" in problems[2]
    assert "used twice" in problems[3]
    assert SECRET not in str(info.value)


def test_env_tokens_take_secrets_or_hashes() -> None:
    tokens = parse_env_tokens(f"ci:read:{SECRET}, ops:operate:sha256:{'f' * 64}")
    assert [(t.name, t.role) for t in tokens] == [("ci", Role.READ), ("ops", Role.OPERATE)]
    assert TokenTable(tokens).find(SECRET) == tokens[0]
    assert tokens[1].digest == bytes.fromhex("f" * 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ci:read", "shorter than 16"),
        ("ci:root:" + "x" * 20, 'role "root"'),
        ("bad/name:read:" + "x" * 20, "expected NAME:ROLE:SECRET"),
        (f"ci:read:{SECRET},ci:read:{SECRET}", "used twice"),
    ],
    ids=["no-secret", "bad-role", "bad-name", "twice"],
)
def test_env_token_problems(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_env_tokens(text)
    assert message in str(info.value)
    assert SECRET not in str(info.value)


def test_local_token_is_created_private_and_reused(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    path = local_token_path(env)
    assert path == tmp_path / "state" / "gslb" / "api-token"
    secret, created = ensure_local_token(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again, created = ensure_local_token(path)
    assert (again, created) == (secret, False)


def test_local_token_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    path.write_text(SECRET + "\n")
    path.chmod(0o644)
    assert ensure_local_token(path) == (SECRET, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_tokens_configured_means_the_local_operate_token(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    table, sources = load_tokens(None, env)
    secret = local_token_path(env).read_text().strip()
    token = table.find(secret)
    assert token == Token(LOCAL_TOKEN_NAME, Role.OPERATE, hash_token(secret))
    assert sources.local_file == local_token_path(env)


def test_configured_tokens_replace_the_local_token(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    append_token_line(tokens_file, token_line("alice", Role.READ, SECRET))
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    env = {"XDG_STATE_HOME": str(tmp_path), ENV_TOKENS: "ci:operate:" + "y" * 30}
    table, sources = load_tokens(tokens_file, env)
    assert sorted(t.name for t in table.tokens) == ["alice", "ci"]
    assert sources.local_file is None
    assert not local_token_path(env).exists()


def test_a_name_in_both_the_file_and_the_env_is_an_error(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    append_token_line(tokens_file, token_line("alice", Role.READ, SECRET))
    with pytest.raises(ConfigError, match="alice"):
        load_tokens(tokens_file, {ENV_TOKENS: "alice:read:" + "z" * 20})


def test_a_missing_tokens_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_tokens(tmp_path / "nope", {})


def test_a_tokens_file_that_is_not_utf8_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_bytes(f"alice operate sha256:{'a' * 64}\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_tokens(tokens_file, {})
    assert info.value.problems == ("not UTF-8 text (byte 0xe9), line 2",)


def test_a_secret_a_header_cannot_carry_is_refused_and_never_quoted() -> None:
    secret = "gslb_caf\u00e9_" + "x" * 20
    with pytest.raises(ConfigError) as info:
        parse_env_tokens(f"ci:read:{secret}")
    assert info.value.problems == (
        'entry 1 ("ci"): the secret is not printable ASCII (it travels in a header)',
    )
    assert secret not in str(info.value)
