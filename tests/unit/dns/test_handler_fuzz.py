"""The mutation fuzzer of tests/dnsfuzz.py in CI: 20,000 inputs through the handler, each
answered by nothing or by a reply dnspython parses (the query's ID, QR=1, RA=0, no SERVFAIL),
with no exception and nothing logged at ERROR. `bench/fuzz_bench.py` runs a million.

The fuzzer's own checks are tested too: a bug planted in the handler must show up in its tally.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from gslb.config.loader import load
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import build_parts
from tests.dnsfuzz import build_handler, fuzz_handler
from tests.server_fixture import EXAMPLE_CONFIG

INPUTS = 20_000
SEED = int(os.environ.get("GSLB_FUZZ_SEED", "20261130"))  # set it to explore other inputs


@pytest.fixture(params=["default-config", "test-geoip-with-maps"])
def handler(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Handler:
    if request.param == "default-config":
        return build_parts(load(EXAMPLE_CONFIG), HealthView()).handler
    return build_handler(tmp_path_factory.mktemp("maps"))


def test_fuzzed_inputs_get_a_valid_reply_or_none(handler: Handler) -> None:
    tally = fuzz_handler(handler, INPUTS, seed=SEED, swap_every=2_000)
    assert tally.failures == 0, tally.report()
    assert tally.inputs == INPUTS
    # the inputs reach every path: drops, errors of each kind, answers, truncation
    for outcome in ("drop", "FORMERR", "NOTIMP", "REFUSED", "NOERROR", "NXDOMAIN", "BADVERS"):
        assert tally.outcomes[outcome] > 0, (outcome, tally.report())


def test_the_fuzzer_reports_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test of the test: `_build` raising is caught by the handler and answered SERVFAIL;
    the fuzzer must count those replies as failures."""
    handler = build_parts(load(EXAMPLE_CONFIG), HealthView()).handler

    def broken(self: Handler, *args: object) -> object:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(Handler, "_build", broken)
    tally = fuzz_handler(handler, 500, seed=1)
    assert tally.failures > 0
    assert tally.problems["SERVFAIL (the handler maps a bug to SERVFAIL)"] > 0, tally.report()


def test_the_fuzzer_reports_exceptions_and_error_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test of the test: an exception escaping `handle`, and an ERROR record next to a
    good reply, are each counted."""
    handler = build_parts(load(EXAMPLE_CONFIG), HealthView()).handler
    original = Handler._build

    def noisy(self: Handler, *args: Any) -> Any:
        logging.getLogger("tests.planted").error("planted error")
        return original(self, *args)

    monkeypatch.setattr(Handler, "_build", noisy)
    tally = fuzz_handler(handler, 300, seed=2)
    assert tally.error_logs > 0 and not tally.problems, tally.report()

    def crash(self: Handler, wire: bytes, peer: str, *, tcp: bool = False) -> bytes | None:
        raise RuntimeError("escaped")

    monkeypatch.setattr(Handler, "handle", crash)
    tally = fuzz_handler(handler, 50, seed=3)
    assert tally.exceptions == 50
