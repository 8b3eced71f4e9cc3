"""deploy/compose/compose.yaml, read as YAML and checked against what gslb and Redis need.

No compose tool runs it here (containers cannot run in this sandbox); the image test
(test_image.py) starts the same config from the built image's files instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gslb.config.loader import load
from tests.deploy.manifests import COMPOSE, ROOT, compose, compose_config_view, gslb_check, image_uid

GSLB_SERVICES = {"prober": "probe", "ns1": "serve", "ns2": "serve", "api": "api"}
RESPONDERS = ("ns1", "ns2")


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def config_view(service: dict[str, Any], tmp_path: Path) -> Path:
    return compose_config_view(service, tmp_path / "etc-gslb")


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for unit in ("ms", "s", "m"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def test_services_are_redis_one_prober_two_responders_and_the_api() -> None:
    assert set(services()) == {"redis", *GSLB_SERVICES}
    for name, command in GSLB_SERVICES.items():
        assert services()[name]["command"] == [command], name


def test_redis_keeps_an_append_only_file_on_a_named_volume() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volumes = [v.split(":") for v in redis["volumes"]]
    data = [source for source, target, *_ in volumes if target == "/data"]
    assert data and data[0] in compose()["volumes"], "redis /data must be a declared volume"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(GSLB_SERVICES))
def test_gslb_services_run_the_image_unprivileged(name: str) -> None:
    service = services()[name]
    build = service["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (
        ROOT / "deploy" / "container" / "Containerfile"
    )
    assert service["user"] == f"{image_uid()}:{image_uid()}"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "cap_add" not in service and not service.get("privileged", False)
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(GSLB_SERVICES))
def test_each_service_sees_a_valid_distributed_config(name: str, tmp_path: Path) -> None:
    etc = config_view(services()[name], tmp_path)
    assert "OK" in gslb_check(etc)
    config = load(etc / "gslb.yaml")
    assert config.state.redis_url is not None
    assert config.state.redis_url.startswith("redis://redis:"), "Redis is the compose service 'redis'"


@pytest.mark.parametrize("name", RESPONDERS)
def test_responders_publish_53_and_check_their_health(name: str, tmp_path: Path) -> None:
    service = services()[name]
    config = load(config_view(service, tmp_path) / "gslb.yaml")
    container_ports = {port.rsplit(":", 1)[1] for port in service["ports"]}
    assert container_ports == {"53/udp", "53/tcp"}
    assert {listen.port for listen in config.server.listen} == {53}
    # uid 10053 binds 53 in the container's own namespace without a capability
    assert int(service["sysctls"]["net.ipv4.ip_unprivileged_port_start"]) <= 53
    assert service["healthcheck"]["test"] == ["CMD", "gslb-entrypoint", "healthcheck"]
    assert config.server.metrics_listen is not None, "/readyz (what healthcheck reads) needs it"
    assert seconds(service["stop_grace_period"]) > config.server.lame_duck_s


def test_responders_keep_their_own_state_volume() -> None:
    """Each process writes its snapshot under one name per config: two responders must not share it."""
    state = {
        name: next(v.split(":")[0] for v in services()[name]["volumes"] if ":/var/lib/gslb" in v)
        for name in GSLB_SERVICES
    }
    assert len(set(state.values())) == len(state), state
    declared = compose()["volumes"]
    for service in services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in declared, f"undeclared volume {source}"


def test_api_is_published_on_loopback_and_checked(tmp_path: Path) -> None:
    api = services()["api"]
    config = load(config_view(api, tmp_path) / "gslb.yaml")
    assert api["ports"] == [f"127.0.0.1:{config.api.listen.port}:{config.api.listen.port}"]
    assert f"127.0.0.1:{config.api.listen.port}" in " ".join(api["healthcheck"]["test"])
    assert services()["prober"]["healthcheck"] == {"disable": True}  # the image's is the responder's
