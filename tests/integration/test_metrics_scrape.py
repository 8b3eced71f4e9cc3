"""`/metrics` of a real embedded `gslb serve` after some queries, a drain and real TCP checks."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.server_fixture import BASIC_CONFIG, GslbProcess

pytestmark = pytest.mark.integration

CHECK = "{{type: tcp, address: 127.0.0.1, port: CHECK_PORT, interval_s: 0.1, timeout_s: 0.1}}"
CHECKED = BASIC_CONFIG.replace("    ttl: 30\n", f"    ttl: 30\n    check: {CHECK}\n")


@pytest.fixture
def check_port() -> Iterator[int]:
    """A TCP port that accepts connections (and closes them) for the tcp checks."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(2)
    listener.close()


def ask(server: GslbProcess, subnet: str = "89.160.20.112/28") -> dns.message.Message:
    address, prefix = subnet.split("/")
    query = dns.message.make_query(
        "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))]
    )
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)


def scrape(server: GslbProcess) -> dict[str, list[Sample]]:
    with urllib.request.urlopen(server.api_url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matching = [
        s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert matching, f"no {name} with {labels}; have {sorted(samples)}"
    return sum(matching)


def drain(server: GslbProcess, token: str, kind: str, name: str, *, force: bool = False) -> None:
    import json

    body = json.dumps({"reason": "metrics test", "force": force}).encode()
    request = urllib.request.Request(
        f"{server.api_url}/v1/{kind}/{name}/drain",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_metrics_have_the_series_after_queries_drains_and_checks(
    tmp_path: Path, gslb_factory: Callable[..., GslbProcess], check_port: int
) -> None:
    server = gslb_factory(CHECKED.replace("CHECK_PORT", str(check_port)))
    token = (tmp_path / "state" / "gslb" / "api-token").read_text().strip()
    for _ in range(5):
        ask(server)
    ask(server, "175.16.199.0/24")  # Changchun: sin
    drain(server, token, "datacenters", "ams")
    drain(server, token, "datacenters", "iad")
    drain(server, token, "datacenters", "sin", force=True)
    assert ask(server).answer == []  # everything drained, no fallback: NODATA
    deadline = time.monotonic() + 10
    samples = scrape(server)
    while not samples.get("gslb_endpoint_rtt_ewma_seconds") and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = scrape(server)

    www = "www.gslb.example.com"
    assert value(samples, "gslb_dns_responses_total", rcode="NOERROR", service=www) == 6
    assert value(samples, "gslb_dns_responses_total", rcode="NODATA", service=www) >= 1
    assert value(samples, "gslb_dns_answers_total", service=www, datacenter="ams") >= 4
    assert value(samples, "gslb_dns_answers_total", service=www, datacenter="sin") >= 1
    # each address a steered reply carries counts for that endpoint
    for address in ("192.0.2.10", "192.0.2.11"):
        per_endpoint = value(
            samples, "gslb_dns_endpoint_answers_total", service=www, datacenter="ams", endpoint=address
        )
        assert per_endpoint == value(samples, "gslb_dns_answers_total", service=www, datacenter="ams")
    assert value(samples, "gslb_when_all_down_answers_total", service=www, mode="drained") >= 1
    assert value(samples, "gslb_service_when_all_down", service=www, policy="fail_open") == 1

    endpoint = f"{www}/ams/192.0.2.10"
    assert value(samples, "gslb_endpoint_health", endpoint=endpoint, datacenter="ams") == 2
    assert value(samples, "gslb_endpoint_drained", endpoint=endpoint) == 1
    assert value(samples, "gslb_datacenter_eligible", service=www, datacenter="ams", region="europe") == 0
    assert value(samples, "gslb_datacenter_state", datacenter="ams", state="drained") == 1
    assert value(samples, "gslb_datacenter_state", datacenter="ams", state="up") == 0
    assert value(samples, "gslb_drains", kind="datacenter") == 3

    assert value(samples, "gslb_endpoint_rtt_ewma_seconds", endpoint=endpoint) > 0
    assert value(samples, "gslb_endpoint_rtt_baseline_seconds", endpoint=endpoint) > 0
    assert value(samples, "gslb_endpoint_check_ok", endpoint=endpoint) == 1
    assert value(samples, "gslb_endpoint_last_check_timestamp_seconds", endpoint=endpoint) > time.time() - 60
    assert value(samples, "gslb_endpoint_prober_health", endpoint=endpoint) == 2

    assert value(samples, "gslb_state_version") >= 3
    assert 0 <= value(samples, "gslb_state_sync_age_seconds") < 5
    assert value(samples, "gslb_state_store_connected") == 1
    assert value(samples, "gslb_probers", freshness="fresh") == 1
    assert value(samples, "gslb_probe_checks_total", result="ok") >= 1
    assert value(samples, "gslb_probe_check_duration_seconds_total") > 0
    assert value(samples, "gslb_probe_targets") == 1  # nine endpoints, one shared tcp check target
    assert value(samples, "gslb_probe_writes_total", result="ok") >= 1
    assert value(samples, "gslb_api_drain_requests_total", action="drain", result="applied") == 3
    assert "process_cpu_seconds_total" in samples
