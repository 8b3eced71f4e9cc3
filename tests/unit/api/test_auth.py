"""Bearer tokens on requests, and the tokens file picked up again when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from gslb.api.auth import Caller, Tokens, authenticate, bearer
from gslb.api.inputs import RequestProblem
from gslb.api.tokens import Role, TokenTable, append_token_line, token_line

SECRET = "gslb_" + "a" * 40
OTHER = "gslb_" + "b" * 40


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {SECRET}", SECRET),
        (f"bearer   {SECRET}  ", SECRET),
        (f"Basic {SECRET}", None),
        ("Bearer ", None),
        (SECRET, None),
        ("", None),
    ],
    ids=["bearer", "case-and-spaces", "basic", "empty-bearer", "no-scheme", "none"],
)
def test_bearer_header(header: str, expected: str | None) -> None:
    request = make_mocked_request("GET", "/", headers={"Authorization": header} if header else {})
    assert bearer(request) == expected


@pytest.mark.parametrize(
    "header",
    # Bytes that are not UTF-8 cannot go through make_mocked_request: test_inputs sends them raw.
    ["Bearer café", f"Bearer {SECRET}é", "Bearer a\tb", "Bearer " + "a" * 2000],
    ids=["non-ascii", "token-then-non-ascii", "tab", "2kB"],
)
def test_a_header_that_cannot_hold_a_token_is_401_and_never_quoted(header: str) -> None:
    request = make_mocked_request("GET", "/", headers={"Authorization": header})
    with pytest.raises(RequestProblem) as info:
        bearer(request)
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    assert info.value.message == "malformed Authorization header: expected Bearer <token> in printable ASCII"


def test_401_for_missing_or_unknown_403_for_the_wrong_role(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    append_token_line(tokens_file, token_line("viewer", Role.READ, SECRET))
    table = Tokens(tokens_file, {}).current()

    def call(header: str | None, needed: Role) -> Caller:
        headers = {"Authorization": header} if header else {}
        return authenticate(make_mocked_request("POST", "/", headers=headers), table, needed)

    for header in (None, f"Bearer {OTHER}", f"Bearer {SECRET}x"):
        with pytest.raises(RequestProblem) as info:
            call(header, Role.READ)
        assert info.value.status == 401
        assert SECRET not in info.value.message
    with pytest.raises(RequestProblem) as info:
        call(f"Bearer {SECRET}", Role.OPERATE)
    assert (info.value.status, info.value.code) == (403, "forbidden")
    assert call(f"Bearer {SECRET}", Role.READ).name == "viewer"


def test_a_changed_tokens_file_is_picked_up_and_a_broken_one_ignored(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    append_token_line(tokens_file, token_line("viewer", Role.READ, SECRET))
    clock = Clock()
    tokens = Tokens(tokens_file, {}, clock=clock)
    assert tokens.current().find(OTHER) is None

    append_token_line(tokens_file, token_line("ops", Role.OPERATE, OTHER))
    assert tokens.current().find(OTHER) is None  # checked at most once a second
    clock.t += 1.5
    found = tokens.current().find(OTHER)
    assert found is not None and found.name == "ops"

    tokens_file.write_text("broken line\n")
    os.utime(tokens_file, (1, 1))
    clock.t += 1.5
    table: TokenTable = tokens.current()
    assert table.find(OTHER) is not None  # the previous tokens stay in force
    assert "2 from" in tokens.describe()
