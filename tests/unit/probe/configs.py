"""Small `Config`s for prober tests: one service, one datacenter per endpoint."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from gslb.config.model import (
    Check,
    Config,
    Datacenter,
    Endpoint,
    ProberConfig,
    Service,
    StateConfig,
    Strategy,
    WhenAllDown,
)


def config_with(
    endpoints: list[tuple[str, Check]],
    *,
    state: StateConfig | None = None,
    prober: ProberConfig | None = None,
) -> Config:
    """A config whose service `www.gslb.test.` has these (address, check) endpoints.

    Endpoint i lives in datacenter `dc<i>` and has the id `www/dc<i>/<address>`.
    """
    eps = tuple(
        Endpoint(
            id=f"www/dc{i}/{address}",
            service="www.gslb.test.",
            datacenter=f"dc{i}",
            address=ip_address(address),
            check=check,
        )
        for i, (address, check) in enumerate(endpoints)
    )
    datacenters = {f"dc{i}": Datacenter(f"dc{i}", 0.0, 0.0, "region") for i in range(len(endpoints))}
    service = Service(
        name="www.gslb.test.",
        zone="gslb.test.",
        ttl=30,
        strategy=Strategy.NEAREST,
        min_up=1,
        when_all_down=WhenAllDown.FAIL_OPEN,
        fallback=(),
        endpoints=eps,
    )
    return Config(
        source=Path("test.yaml"),
        regions=("region",),
        datacenters=datacenters,
        services={service.name: service},
        state=state or StateConfig(),
        prober=prober or ProberConfig(),
    )
