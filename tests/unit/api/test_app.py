"""The ops api in process: auth on every route, drains and the 409 rule, audit, state, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from gslb.api.app import routes
from gslb.api.tokens import Role
from gslb.config.model import ApiConfig, Config
from gslb.errors import StateError
from tests.unit.api.harness import AMS, EUROPE_ECS, IAD, OPERATE, READ, SIN, Harness, auth, running

Check = Callable[[Harness], Awaitable[None]]

MUTATING = [r for r in routes(ApiConfig()) if r.method == "POST"]
READ_ONLY = [r for r in routes(ApiConfig()) if r.role is Role.READ]
OPEN = [r for r in routes(ApiConfig()) if r.role is None]
EXAMPLE = {"name": "europe", "id": "www.gslb.example.com/ams/192.0.2.10"}


def concrete(path: str) -> str:
    return path.replace("{name}", "europe").replace("{id:.+}", quote(EXAMPLE["id"], safe=""))


def run(config: Config, check: Check, **kwargs: object) -> None:
    async def main() -> None:
        async with running(config, **kwargs) as h:  # type: ignore[arg-type]
            await check(h)

    asyncio.run(main())


def test_every_route_is_either_open_read_or_operate() -> None:
    assert len(MUTATING) == 6
    assert all(r.role is Role.OPERATE for r in MUTATING)
    assert {r.path for r in OPEN} == {"/", "/static/{name}", "/v1/openapi.json", "/metrics"}


@pytest.mark.parametrize("route", MUTATING, ids=[r.path for r in MUTATING])
def test_mutating_routes_need_an_operate_token(config: Config, route: object) -> None:
    path = concrete(route.path)  # type: ignore[attr-defined]

    async def check(h: Harness) -> None:
        body = {"reason": "auth test"}
        assert await h.post(path, body, token=None) == (
            401,
            {"error": "unauthorized", "message": "missing token: send Authorization: Bearer <token>"},
        )
        status, error = await h.post(path, body, token="gslb_wrong_" + "w" * 30)
        assert (status, error["error"]) == (401, "unauthorized")
        status, error = await h.post(path, body, token=READ)
        assert (status, error["error"]) == (403, "forbidden")
        assert "read role" in error["message"]
        assert h.sync.current.drains == ()
        assert await h.store.recent_audit() == ()
        response = await h.client.post(path, json=body)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="gslb"'

    run(config, check)


@pytest.mark.parametrize("route", READ_ONLY, ids=[r.path for r in READ_ONLY])
def test_read_routes_need_a_token_and_take_either_role(config: Config, route: object) -> None:
    path = concrete(route.path) + ("?name=www.gslb.example.com" if "explain" in route.path else "")  # type: ignore[attr-defined]

    async def check(h: Harness) -> None:
        assert (await h.get(path, token=None))[0] == 401
        assert (await h.get(path, token="nope" * 5))[0] == 401
        assert (await h.get(path, token=READ))[0] == 200
        assert (await h.get(path, token=OPERATE))[0] == 200

    run(config, check)


def test_open_routes_need_no_token(config: Config) -> None:
    async def check(h: Harness) -> None:
        for path in (
            "/",
            "/static/app.js",
            "/static/style.css",
            "/static/world.json",
            "/v1/openapi.json",
            "/metrics",
        ):
            response = await h.client.get(path)
            assert response.status == 200, path
        page = await h.client.get("/")
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]

    run(config, check)


def test_metrics_can_require_a_read_token(config: Config) -> None:
    async def check(h: Harness) -> None:
        assert (await h.client.get("/metrics")).status == 401
        assert (await h.client.get("/metrics", headers=auth(READ))).status == 200

    run(config, check, settings=ApiConfig(metrics_require_token=True))


def test_drain_a_region_answers_from_the_next_nearest_and_undrain_restores(config: Config) -> None:
    async def check(h: Harness) -> None:
        assert h.answer() == AMS
        before = time.time()
        status, body = await h.post(
            "/v1/regions/europe/drain", {"reason": "maintenance", "expires_in_s": 600}
        )
        assert status == 200, body
        # The response comes after this process's responder applied it.
        assert h.answer() == IAD
        assert body["action"] == "drain"
        assert body["target"] == {"kind": "region", "name": "europe"}
        assert body["drain"]["reason"] == "maintenance"
        assert body["drain"]["token"] == "operator"
        assert body["drain"]["source"] == "127.0.0.1"
        assert body["affected_datacenters"] == ["ams"]
        assert body["affected_services"] == ["api4.gslb.example.com.", "www.gslb.example.com."]
        assert body["ttl"] == 60  # the longest TTL of the affected services
        assert body["state_version"] == await h.store.version()
        assert body["forced"] is False and body["emptied"] == [] and body["replaced"] is None
        effective = _ts(body["effective_at"])
        assert before - 0.01 <= effective <= time.time()
        assert _ts(body["caches_clear_by"]) == pytest.approx(_ts(body["responders_by"]) + 60, abs=0.002)
        assert _ts(body["drain"]["expires_at"]) == pytest.approx(
            _ts(body["drain"]["created_at"]) + 600, abs=0.002
        )

        status, body = await h.post("/v1/regions/europe/undrain", {"reason": "done"})
        assert status == 200, body
        assert h.answer() == AMS
        assert body["removed"]["target"] == "europe"
        assert body["still_drained_by"] == []
        assert body["negative_ttl"] is None

        entries = (await h.get("/v1/audit"))[1]["entries"]
        assert [
            (e["action"], e["target"], e["result"], e["token"], e["source"], e["reason"]) for e in entries
        ] == [
            ("undrain", "region:europe", "applied", "operator", "127.0.0.1", "done"),
            ("drain", "region:europe", "applied", "operator", "127.0.0.1", "maintenance"),
        ]

    run(config, check)


def test_draining_everything_is_409_unless_forced(config: Config) -> None:
    async def check(h: Harness) -> None:
        assert (await h.post("/v1/datacenters/ams/drain", {"reason": "a"}))[0] == 200
        status, body = await h.post("/v1/datacenters/iad/drain", {"reason": "b"})
        assert status == 409
        assert body["error"] == "would_drain_everything"
        assert "api4.gslb.example.com" in body["message"]
        assert body["emptied"] == [{"service": "api4.gslb.example.com.", "family": "A", "fallback": True}]
        assert [d.target for d in h.sync.current.drains] == ["ams"]
        assert h.answer(name="api4.gslb.example.com") == {"198.51.100.20"}

        status, body = await h.post("/v1/datacenters/iad/drain", {"reason": "b", "force": True})
        assert status == 200
        assert body["forced"] is True
        assert h.answer(name="api4.gslb.example.com") == {"192.0.2.99"}  # its fallback
        assert h.answer() == SIN

        entries = (await h.get("/v1/audit"))[1]["entries"]
        assert [(e["target"], e["result"]) for e in entries] == [
            ("datacenter:iad", "applied"),
            ("datacenter:iad", "refused"),
            ("datacenter:ams", "applied"),
        ]
        assert "would leave nothing" in entries[1]["detail"]

    run(config, check)


def test_endpoint_ids_travel_encoded_or_not(config: Config) -> None:
    endpoint = "www.gslb.example.com/ams/2001:db8:a::10"

    async def check(h: Harness) -> None:
        status, body = await h.post(f"/v1/endpoints/{quote(endpoint, safe='')}/drain", {"reason": "disk"})
        assert status == 200, body
        assert body["drain"]["target"] == endpoint
        assert body["affected_endpoints"] == 1
        assert h.answer(rdtype="AAAA") == {"2001:db8:b::10"}  # iad: the last v6 address of ams is drained
        status, body = await h.post(f"/v1/endpoints/{endpoint}/undrain")
        assert status == 200, body
        assert body["removed"]["target"] == endpoint
        assert h.answer(rdtype="AAAA") == {"2001:db8:a::10"}

    run(config, check)


def test_undrain_of_a_datacenter_says_what_still_drains_it(config: Config) -> None:
    async def check(h: Harness) -> None:
        await h.post("/v1/regions/europe/drain", {"reason": "a"})
        await h.post("/v1/datacenters/ams/drain", {"reason": "b"})
        status, body = await h.post("/v1/datacenters/ams/undrain")
        assert status == 200
        assert [(d["kind"], d["target"]) for d in body["still_drained_by"]] == [("region", "europe")]
        assert h.answer() == IAD

    run(config, check)


def test_undrain_of_something_not_drained_changes_nothing_and_is_audited(config: Config) -> None:
    async def check(h: Harness) -> None:
        version = await h.store.version()
        status, body = await h.post("/v1/datacenters/sin/undrain", {"reason": "just in case"})
        assert status == 200
        assert body["removed"] is None
        assert body["message"] == "datacenter sin was not drained"
        assert await h.store.version() == version
        (entry,) = (await h.get("/v1/audit"))[1]["entries"]
        assert (entry["action"], entry["result"]) == ("undrain", "not_drained")

    run(config, check)


def test_undrain_after_a_forced_drain_counts_the_negative_ttl(config: Config) -> None:
    async def check(h: Harness) -> None:
        await h.post("/v1/regions/americas/drain", {"reason": "a"})
        await h.post("/v1/regions/asia-pacific/drain", {"reason": "b"})
        status, _ = await h.post("/v1/regions/europe/drain", {"reason": "c", "force": True})
        assert status == 200
        assert h.answer() == set()  # NODATA: drained everywhere, no fallback for www
        status, body = await h.post("/v1/regions/europe/undrain")
        assert status == 200
        assert body["negative_ttl"] == 60  # min(SOA TTL, SOA MINIMUM) of the example zone
        assert body["ttl"] == 60

    run(config, check)


def test_a_drain_expires_by_itself(config: Config) -> None:
    async def check(h: Harness) -> None:
        status, _ = await h.post("/v1/datacenters/ams/drain", {"reason": "short", "expires_in_s": 0.3})
        assert status == 200
        assert h.answer() == IAD
        deadline = time.monotonic() + 5
        while h.answer() != AMS and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert h.answer() == AMS
        assert (await h.get("/v1/state"))[1]["drains"] == []

    run(config, check)


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/regions/eu/drain", {"reason": "x"}, 404, "unknown_region"),
        ("/v1/datacenters/fra/drain", {"reason": "x"}, 404, "unknown_datacenter"),
        ("/v1/datacenters/fra/undrain", {}, 404, "unknown_datacenter"),
        (
            "/v1/endpoints/www.gslb.example.com%2Fams%2F10.0.0.1/drain",
            {"reason": "x"},
            404,
            "unknown_endpoint",
        ),
        ("/v1/regions/europe/drain", None, 400, "bad_body"),
        ("/v1/regions/europe/drain", {"reason": "x", "expires_in_s": -1}, 400, "bad_value"),
        ("/v1/regions/europe/drain", {"why": "x"}, 400, "unknown_key"),
        ("/v1/nothing/here", {}, 404, "not_found"),
    ],
    ids=["region", "datacenter", "undrain-datacenter", "endpoint", "no-body", "bad-expiry", "typo", "route"],
)
def test_errors_are_json(config: Config, path: str, body: object, status: int, code: str) -> None:
    async def check(h: Harness) -> None:
        got_status, got = await h.post(path, body)
        assert (got_status, got["error"]) == (status, code)
        assert got["message"]

    run(config, check)


def test_bad_json_wrong_methods_and_huge_bodies_are_json_errors(config: Config) -> None:
    async def check(h: Harness) -> None:
        response = await h.client.post("/v1/regions/europe/drain", data=b"{reason:", headers=auth(OPERATE))
        assert response.status == 400
        assert (await response.json())["error"] == "bad_json"
        response = await h.client.get("/v1/regions/europe/drain", headers=auth(OPERATE))
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"] == "method_not_allowed"
        response = await h.client.post(
            "/v1/regions/europe/drain", data=b'{"reason": "' + b"x" * 100_000 + b'"}', headers=auth(OPERATE)
        )
        assert response.status == 413
        assert (await response.json())["error"] == "body_too_large"
        response = await h.client.get("/static/..%2Fapp.py")
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"

    run(config, check)


def test_state_shows_datacenters_regions_endpoints_and_drains(config: Config) -> None:
    async def check(h: Harness) -> None:
        await h.post("/v1/regions/europe/drain", {"reason": "r1"})
        await h.post("/v1/endpoints/www.gslb.example.com%2Fsin%2F203.0.113.10/drain", {"reason": "r2"})
        status, state = await h.get("/v1/state")
        assert status == 200
        assert state["mode"] == "embedded"
        assert state["state_version"] == await h.store.version()
        assert state["sync"]["connected"] is True
        assert {dc["name"]: dc["state"] for dc in state["datacenters"]} == {
            "ams": "drained",
            "iad": "up",
            "sin": "degraded",
        }
        ams = next(dc for dc in state["datacenters"] if dc["name"] == "ams")
        assert ams["drain"]["kind"] == "region"
        assert (ams["latitude"], ams["longitude"]) == (52.37, 4.90)
        europe = next(r for r in state["regions"] if r["name"] == "europe")
        assert europe["datacenters"] == ["ams"] and europe["drain"]["reason"] == "r1"
        endpoint = next(e for e in state["endpoints"] if e["id"] == "www.gslb.example.com/sin/203.0.113.10")
        assert endpoint["drained"] is True and endpoint["health"] == "up"
        assert sorted(d["target"] for d in state["drains"]) == [
            "europe",
            "www.gslb.example.com/sin/203.0.113.10",
        ]
        www = next(s for s in state["services"] if s["name"] == "www.gslb.example.com.")
        assert www["eligible_datacenters"] == ["iad", "sin"]

    run(config, check)


def test_explain_uses_the_live_health(config: Config) -> None:
    async def check(h: Harness) -> None:
        query = f"/v1/explain?name=www.gslb.example.com&client=10.0.0.1&ecs={quote(EUROPE_ECS)}"
        status, body = await h.get(query)
        assert (status, body["choice"], body["mode"]) == (200, "ams", "nearest")
        await h.post("/v1/datacenters/ams/drain", {"reason": "x"})
        status, body = await h.get(query)
        assert (body["choice"], body["mode"]) == ("iad", "failover")
        assert "drained (datacenter ams by operator: x)" in body["text"]
        for bad in ("client=nope", "ecs=nope", "type=MX", ""):
            status, body = await h.get(
                f"/v1/explain?name=www.gslb.example.com&{bad}" if bad else "/v1/explain"
            )
            assert (status, body["error"]) == (400, "bad_value"), bad

    run(config, check)


def test_whoami_and_audit_limit(config: Config) -> None:
    async def check(h: Harness) -> None:
        assert await h.get("/v1/whoami") == (200, {"token": "reader", "role": "read", "source": "127.0.0.1"})
        assert (await h.get("/v1/audit?limit=0"))[0] == 400
        assert (await h.get("/v1/audit?limit=x"))[0] == 400

    run(config, check)


def test_audit_file_gets_one_json_line_per_action(tmp_path: Path, config: Config) -> None:
    log_file = tmp_path / "audit.jsonl"

    async def check(h: Harness) -> None:
        await h.post("/v1/regions/europe/drain", {"reason": "r", "expires_in_s": 60})
        await h.post("/v1/regions/americas/drain", {"reason": "r"})  # refused: api4 has nothing left
        await h.post("/v1/regions/europe/undrain", {"reason": "ok"})

    run(config, check, settings=ApiConfig(audit_log=log_file))
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(x["action"], x["target"], x["result"]) for x in lines] == [
        ("drain", "region:europe", "applied"),
        ("drain", "region:americas", "refused"),
        ("undrain", "region:europe", "applied"),
    ]
    first = lines[0]
    assert (first["token"], first["source"], first["reason"]) == ("operator", "127.0.0.1", "r")
    assert first["state_version"] >= 1 and first["expires_at"] and first["at"].endswith("Z")
    assert log_file.stat().st_mode & 0o077 == 0


def test_tokens_never_reach_the_log(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "gslb_wrong_" + "q" * 30
    caplog.set_level(logging.DEBUG)

    async def check(h: Harness) -> None:
        await h.post("/v1/regions/europe/drain", {"reason": "r"}, token=OPERATE)
        await h.post("/v1/regions/europe/undrain", {}, token=OPERATE)
        await h.post("/v1/regions/europe/drain", {"reason": "r"}, token=READ)
        await h.post("/v1/regions/europe/drain", {"reason": "r"}, token=wrong)
        await h.get("/v1/state", token=wrong)
        await h.get("/v1/state", token=READ)

    run(config, check)
    assert "drained region:europe by operator@127.0.0.1" in caplog.text
    assert "refused POST /v1/regions/europe/drain from 127.0.0.1: forbidden" in caplog.text
    for secret in (OPERATE, READ, wrong, OPERATE[5:25], READ[5:25], wrong[5:25]):
        assert secret not in caplog.text


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_a_failing_store_is_503_and_nothing_changes(config: Config) -> None:
    async def check(h: Harness) -> None:
        async def broken(*args: object, **kwargs: object) -> None:
            raise StateError("redis add_drain failed: ConnectionError: redis is gone")

        h.store.add_drain = broken  # type: ignore[method-assign, assignment]
        status, body = await h.post("/v1/regions/europe/drain", {"reason": "x"})
        assert (status, body["error"]) == (503, "store_unavailable")
        assert "may or may not have been stored" in body["message"]
        h.store.recent_audit = broken  # type: ignore[method-assign, assignment]
        assert (await h.get("/v1/audit"))[0] == 503
        assert (await h.get("/v1/state"))[0] == 200  # state comes from the last sync
        assert h.answer() == AMS

    run(config, check)
