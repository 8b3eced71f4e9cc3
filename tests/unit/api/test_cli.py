"""The api side of the CLI: durations, finding the api and the token, the `gslb state` table."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from gslb.api.client import ApiClient, api_url, find_token, quote
from gslb.api.tokens import local_token_path
from gslb.cli import build_parser, duration_s, render_state
from gslb.config.model import Config
from tests.unit.api.harness import READ, Harness, running


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("0.5", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "10x", "m", "soon"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration_s(text)


def test_drain_needs_a_reason_and_a_kind() -> None:
    parser = build_parser()
    args = parser.parse_args(["drain", "region", "europe", "--reason", "r", "--expires-in", "10m", "--force"])
    assert (args.kind, args.name, args.reason, args.expires_in, args.force) == (
        "region",
        "europe",
        "r",
        600.0,
        True,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["drain", "region", "europe"])
    with pytest.raises(SystemExit):
        parser.parse_args(["drain", "continent", "europe", "--reason", "r"])
    args = parser.parse_args(["undrain", "endpoint", "www.gslb.example.com/ams/192.0.2.10"])
    assert args.reason is None


def test_endpoint_ids_are_encoded_as_one_path_segment() -> None:
    assert (
        quote("www.gslb.example.com/ams/2001:db8:a::10")
        == "www.gslb.example.com%2Fams%2F2001%3Adb8%3Aa%3A%3A10"
    )


def test_api_url_and_token_lookup_order(tmp_path: Path) -> None:
    assert api_url(None, {}) == "http://127.0.0.1:8053"
    assert api_url(None, {"GSLB_API_URL": "http://10.0.0.1:9000/"}) == "http://10.0.0.1:9000"
    assert api_url("http://h:1", {"GSLB_API_URL": "http://x"}) == "http://h:1"
    env = {"XDG_STATE_HOME": str(tmp_path)}
    assert find_token(None, env) is None
    local = local_token_path(env)
    local.parent.mkdir(parents=True)
    local.write_text("from-local\n")
    assert find_token(None, env) == "from-local"
    assert find_token(None, {**env, "GSLB_API_TOKEN": "from-env"}) == "from-env"
    explicit = tmp_path / "token"
    explicit.write_text("\nfrom-file\n")
    assert find_token(str(explicit), {**env, "GSLB_API_TOKEN": "from-env"}) == "from-file"


def test_state_table(config: Config) -> None:
    async def fetch(h: Harness) -> Any:
        await h.post("/v1/regions/europe/drain", {"reason": "maintenance"})
        return (await h.get("/v1/state", token=READ))[1]

    async def main() -> Any:
        async with running(config) as h:
            return await fetch(h)

    text = render_state(asyncio.run(main()), endpoints=True)
    lines = text.splitlines()
    assert lines[0].startswith("gslb state: embedded mode, state version 1, last sync")
    assert any(line.split()[:3] == ["europe", "ams", "drained"] and "maintenance" in line for line in lines)
    assert any(line.split()[:4] == ["americas", "iad", "up", "4/4"] for line in lines)
    assert any(line.startswith("www.gslb.example.com") and "iad, sin" in line for line in lines)
    assert any(line.startswith("www.gslb.example.com/ams/192.0.2.10") for line in lines)
    assert "region europe: 'maintenance' by operator@127.0.0.1" in text


def test_an_unreachable_api_is_one_clear_error() -> None:
    from gslb.api.client import ApiError

    with pytest.raises(ApiError, match=r"cannot reach the api at http://127\.0\.0\.1:9"):
        ApiClient("http://127.0.0.1:9", None, timeout_s=1).state()


def test_token_create_appends_the_hash_and_prints_the_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gslb.api.tokens import parse_tokens_file
    from gslb.errors import GslbError

    def create(*args: str) -> int:
        # Not main(): it would configure the root logger for the rest of the test session.
        parsed = build_parser().parse_args(["token", "create", *args])
        return int(parsed.func(parsed))

    tokens_file = tmp_path / "tokens"
    assert create("alice", "--role", "operate", "--file", str(tokens_file)) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("gslb_") and "shown only now" in err
    assert secret not in tokens_file.read_text()
    (token,) = parse_tokens_file(tokens_file.read_text(), "tokens")
    assert (token.name, token.role.value) == ("alice", "operate")

    with pytest.raises(GslbError, match='already has a token named "alice"'):
        create("alice", "--role", "read", "--file", str(tokens_file))
    with pytest.raises(GslbError, match="not a token name"):
        create("bad/name", "--role", "read", "--file", str(tokens_file))

    assert create("bob", "--role", "read") == 0  # no file: print the line to add
    out, err = capsys.readouterr()
    assert "bob read sha256:" in err and out.strip() not in err
