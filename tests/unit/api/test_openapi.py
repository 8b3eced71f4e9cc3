"""The OpenAPI document and the application's router describe the same routes and roles."""

from __future__ import annotations

import re

import pytest

from gslb.api.app import build_app
from gslb.api.auth import Tokens
from gslb.api.context import ApiContext
from gslb.api.openapi import spec
from gslb.config.model import ApiConfig, Config
from gslb.health.view import HealthView
from gslb.responder import Parts, build_parts
from gslb.state.store import MemoryStore
from gslb.state.sync import HealthSync
from tests.unit.api.harness import ENV


def router_routes(config: Config) -> set[tuple[str, str]]:
    parts: Parts = build_parts(config, HealthView())
    store = MemoryStore()
    context = ApiContext(lambda: parts, store, HealthSync(store), None)
    app = build_app(ApiConfig(), context, Tokens(None, ENV))
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        out.add((route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    return out


def spec_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec()["paths"].items() for method in item}


def test_every_route_is_in_the_spec_and_every_spec_path_is_a_route(config: Config) -> None:
    routes = router_routes(config)
    assert routes == spec_routes()
    assert ("POST", "/v1/endpoints/{id}/drain") in routes


def test_the_spec_states_the_role_each_route_needs() -> None:
    from gslb.api.app import routes

    roles = {
        (r.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path)): (r.role.value if r.role else None)
        for r in routes(ApiConfig())
    }
    for path, item in spec()["paths"].items():
        for method, operation in item.items():
            role = roles[(method.upper(), path)]
            assert operation.get("x-gslb-role") == role, (method, path)
            assert bool(operation["security"]) == (role is not None), (method, path)


def test_path_parameters_are_declared() -> None:
    for path, item in spec()["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path


@pytest.mark.parametrize(
    "ref", ["DrainRequest", "DrainResult", "UndrainResult", "State", "AuditEntry", "Error"]
)
def test_schemas_exist(ref: str) -> None:
    document = spec()
    assert ref in document["components"]["schemas"]
    assert document["openapi"].startswith("3.1")
