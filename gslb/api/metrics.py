"""Prometheus metrics: one custom collector that reads the live values at scrape time.

Adapter layer (prometheus-client). Nothing is counted per query here: the DNS handler keeps
its own plain counters (`Handler.totals()`), the prober its `stats`, the health sync its
view; the collector turns them into metric families when Prometheus asks. Names follow
Prometheus conventions (base units: seconds; `_total` for counters). Series:

- queries (responder): `gslb_dns_responses_total{rcode,service}`,
  `gslb_dns_answers_total{service,datacenter}` (steered answers by the datacenter chosen),
  `gslb_dns_endpoint_answers_total{service,datacenter,endpoint}` (each address a reply carries),
  `gslb_when_all_down_answers_total{service,mode}` (fail_open, fallback, servfail, drained),
- response rate limiting (responder): `gslb_rrl_responses_total{action}` (slipped, dropped,
  logged), `gslb_rrl_limited_total{class}` (answer, nxdomain, nodata, error, all, ecs),
  `gslb_rrl_accounts`,
- health: `gslb_endpoint_health{endpoint,service,datacenter}` (2 up, 1 degraded, 0 down),
  `gslb_endpoint_drained`, `gslb_datacenter_eligible{service,datacenter,region}`,
  `gslb_datacenter_state{datacenter,region,state}` (1 for the current state),
  `gslb_service_when_all_down{service,policy}` (1 while nothing is eligible), `gslb_drains{kind}`,
- state: `gslb_state_version`, `gslb_state_view_generation`, `gslb_state_sync_age_seconds`,
  `gslb_state_store_connected`, `gslb_probers{freshness}`, `gslb_prober_heartbeat_age_seconds{prober}`,
  `gslb_prober_stale{prober}`, `gslb_prober_stale_since_timestamp_seconds{prober}`,
  `gslb_health_held` (1 while no prober is fresh and the last verdicts hold),
  `gslb_health_held_seconds`, `gslb_endpoints_held{health}`, `gslb_endpoint_held{endpoint}`,
- per prober and endpoint (api, when details can be read): `gslb_endpoint_rtt_ewma_seconds`,
  `gslb_endpoint_rtt_baseline_seconds`, `gslb_endpoint_check_ok`,
  `gslb_endpoint_last_check_timestamp_seconds`, `gslb_endpoint_prober_health`,
- the in-process prober: `gslb_probe_checks_total{prober,result}`, `gslb_probe_errors_total`,
  `gslb_probe_late_total`, `gslb_probe_check_duration_seconds_total`,
  `gslb_probe_check_duration_seconds_max`, `gslb_probe_targets`, `gslb_probe_writes_total{result}`,
- the api: `gslb_api_drain_requests_total{action,result}`,
- the fleet (api, from the responders' registrations): `gslb_responders{status}` (up, stale,
  stopped), `gslb_responder_info{responder,host,version,config_hash,identity}` (1),
  `gslb_responder_up{responder}` (1 up, 0 stale or stopped), `gslb_responder_heartbeat_age_seconds`,
  `gslb_responder_zone_serial{responder,zone}`, `gslb_responder_last_reload_success{responder}`
  (1 ok, 0 failed; absent before the first reload), `gslb_responder_last_reload_timestamp_seconds`,
  `gslb_responder_state_version`, `gslb_responder_sync_age_seconds`,
  `gslb_responder_answers_total{responder,datacenter}`,
  `gslb_responder_answers_per_second{responder,datacenter}`, `gslb_zone_serial_drift{zone}`
  (1 while live responders serve the zone with different serials), `gslb_config_drift` (1 while
  live responders run different config files),
- this responder's reloads and zones: `gslb_reload_total{result}` (ok, failed),
  `gslb_zone_serial{zone}`, `gslb_config_last_reload_success`,
- DNS over TCP (responder): `gslb_tcp_connections{state}` (idle, busy), `gslb_tcp_accepted_total`,
  `gslb_tcp_refused_total{reason}` (client, network, total), `gslb_tcp_idle_closed_total` (closed
  to make room at the cap), `gslb_tcp_timeouts_total{kind}` (idle, read).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from gslb.api.context import ApiContext
from gslb.api.report import (
    ResponderStatus,
    config_drift,
    datacenter_health,
    live_responders,
    responder_status,
    serial_drift,
)
from gslb.dns.rrl import CLASS_NAMES
from gslb.health.snapshot import Snapshot
from gslb.health.view import DrainKind, Health
from gslb.lograte import LogRate, bug_kind, describe
from gslb.policy.decision import service_states
from gslb.state.responders import ResponderRecord

log = logging.getLogger(__name__)

HEALTH_VALUE = {Health.UP: 2.0, Health.DEGRADED: 1.0, Health.DOWN: 0.0}


def _name(service: str) -> str:
    return service.rstrip(".")


class GslbCollector(Collector):
    """Reads `context` at every scrape. `details` is refreshed by the scrape handler first."""

    def __init__(self, context: ApiContext, *, clock: Callable[[], float] = time.time) -> None:
        self.context = context
        self.clock = clock
        self.details: Snapshot | None = None
        self.responders: tuple[ResponderRecord, ...] | None = None  # refreshed by the scrape handler
        self.api_requests: Counter[tuple[str, str]] = Counter()
        self._failures = LogRate(log, "failed metrics collections", level=logging.ERROR, clock=clock)

    def describe(self) -> list[Metric]:
        return []  # values are read live: no fixed description, no collection at registration

    def collect(self) -> Iterator[Metric]:
        try:
            families = [
                *self._queries(),
                *self._rrl(),
                *self._health(),
                *self._state(),
                *self._details(),
                *self._prober(),
                *self._api(),
                *self._tcp(),
                *self._reloads(),
                *self._fleet(),
            ]
        except Exception as e:
            # A bug (the values are in memory: nothing here waits on the store). Its traceback
            # once per kind and streak, then a count every interval: never silent for good.
            if self._failures.first(describe(e), bug_kind(e)):
                log.exception("metrics collection failed; this scrape is empty (repeats are counted)")
            return
        yield from families

    def _queries(self) -> Iterator[Metric]:
        if not self.context.responder_local:
            return
        totals = self.context.parts().totals()
        responses = CounterMetricFamily(
            "gslb_dns_responses", "DNS replies sent, by rcode and service", labels=["rcode", "service"]
        )
        answers = CounterMetricFamily(
            "gslb_dns_answers",
            "Steered replies by the datacenter whose addresses they carry",
            labels=["service", "datacenter"],
        )
        all_down = CounterMetricFamily(
            "gslb_when_all_down_answers",
            "Steered replies given by a when_all_down branch (fail_open, fallback, servfail, drained)",
            labels=["service", "mode"],
        )
        endpoints = CounterMetricFamily(
            "gslb_dns_endpoint_answers",
            "Steered replies carrying each endpoint address (a reply with three addresses counts for each)",
            labels=["service", "datacenter", "endpoint"],
        )
        by_rcode: Counter[tuple[str, str]] = Counter()
        by_dc: Counter[tuple[str, str]] = Counter()
        by_endpoint: Counter[tuple[str, str, str]] = Counter()
        by_mode: Counter[tuple[str, str]] = Counter()
        for label, count in totals.items():
            service = _name(label.service)
            by_rcode[(label.rcode, service)] += count
            if label.datacenter:
                by_dc[(service, label.datacenter)] += count
                for address in label.endpoints:
                    by_endpoint[(service, label.datacenter, address)] += count
            elif label.branch:
                by_mode[(service, label.branch)] += count
        for labels, count in sorted(by_rcode.items()):
            responses.add_metric(list(labels), count)
        for labels, count in sorted(by_dc.items()):
            answers.add_metric(list(labels), count)
        for labels, count in sorted(by_mode.items()):
            all_down.add_metric(list(labels), count)
        for endpoint_labels, count in sorted(by_endpoint.items()):
            endpoints.add_metric(list(endpoint_labels), count)
        yield from (responses, answers, all_down, endpoints)

    def _rrl(self) -> Iterator[Metric]:
        if not self.context.responder_local:
            return
        rrl = self.context.parts().rrl
        if rrl is None:
            return
        totals = rrl.totals
        responses = CounterMetricFamily(
            "gslb_rrl_responses",
            "UDP replies limited by response rate limiting: slipped (sent truncated, TC=1), "
            "dropped, or logged (log_only: sent in full)",
            labels=["action"],
        )
        responses.add_metric(["slipped"], float(totals.slipped))
        responses.add_metric(["dropped"], float(totals.dropped))
        responses.add_metric(["logged"], float(totals.logged))
        limited = CounterMetricFamily(
            "gslb_rrl_limited",
            "UDP replies over a rate limit, by the response class whose account was exhausted",
            labels=["class"],
        )
        for name, count in zip(CLASS_NAMES, totals.by_class, strict=True):
            limited.add_metric([name], float(count))
        yield from (responses, limited)
        yield GaugeMetricFamily(
            "gslb_rrl_accounts", "Rate limiting accounts held (bounded by table_size)", value=rrl.table_size()
        )

    def _health(self) -> Iterator[Metric]:
        config = self.context.parts().config
        view = self.context.sync.current
        now = self.clock()
        endpoint_health = GaugeMetricFamily(
            "gslb_endpoint_health",
            "Combined endpoint health: 2 up, 1 degraded, 0 down (drains not counted)",
            labels=["endpoint", "service", "datacenter"],
        )
        drained = GaugeMetricFamily(
            "gslb_endpoint_drained",
            "1 when a drain (endpoint, datacenter or region) holds the endpoint out of answers",
            labels=["endpoint", "service", "datacenter"],
        )
        for e in config.endpoints():
            labels = [e.id, _name(e.service), e.datacenter]
            endpoint_health.add_metric(labels, HEALTH_VALUE[view.health(e.id)])
            region = config.datacenters[e.datacenter].region
            drain = view.drain_for(region=region, datacenter=e.datacenter, endpoint_id=e.id, now=now)
            drained.add_metric(labels, 1.0 if drain else 0.0)
        states = service_states(config, view, now=now)
        eligible = GaugeMetricFamily(
            "gslb_datacenter_eligible",
            "1 when the datacenter can take the service's traffic (undrained, enough endpoints up)",
            labels=["service", "datacenter", "region"],
        )
        all_down = GaugeMetricFamily(
            "gslb_service_when_all_down",
            "1 while no datacenter is eligible for the service and its when_all_down policy answers",
            labels=["service", "policy"],
        )
        for service, by_dc in states.items():
            for name, state in by_dc.items():
                eligible.add_metric(
                    [_name(service), name, config.datacenters[name].region], 1.0 if state.eligible else 0.0
                )
            policy = config.services[service].when_all_down.value
            all_down.add_metric(
                [_name(service), policy], 0.0 if any(s.eligible for s in by_dc.values()) else 1.0
            )
        dc_state = GaugeMetricFamily(
            "gslb_datacenter_state",
            "1 for the datacenter's current state (up, degraded, down, drained), 0 for the others",
            labels=["datacenter", "region", "state"],
        )
        for name, dc in config.datacenters.items():
            health, _ = datacenter_health(name, config, states, view, now)
            for candidate in ("up", "degraded", "down", "drained"):
                dc_state.add_metric([name, dc.region, candidate], 1.0 if health.value == candidate else 0.0)
        drains = GaugeMetricFamily("gslb_drains", "Drains in force, by kind", labels=["kind"])
        active = Counter(d.kind for d in view.drains if d.active(now))
        for kind in DrainKind:
            drains.add_metric([kind.value], float(active[kind]))
        yield from (endpoint_health, drained, eligible, all_down, dc_state, drains)

    def _state(self) -> Iterator[Metric]:
        sync = self.context.sync
        now = self.clock()
        yield GaugeMetricFamily(
            "gslb_state_version", "Store version of the state in use", value=float(sync.store_version)
        )
        yield GaugeMetricFamily(
            "gslb_state_view_generation",
            "Local generation of the health view (grows at every swap)",
            value=float(sync.current.version),
        )
        age = GaugeMetricFamily(
            "gslb_state_sync_age_seconds", "Seconds since the state store was last read successfully"
        )
        if sync.last_sync_at is not None:
            age.add_metric([], max(0.0, now - sync.last_sync_at))
        yield age
        yield GaugeMetricFamily(
            "gslb_state_store_connected",
            "1 when the last read of the state store succeeded",
            value=1.0 if sync.connected else 0.0,
        )
        stale = set(sync.stale_probers)
        probers = GaugeMetricFamily("gslb_probers", "Probers known to the store", labels=["freshness"])
        known = set(sync.snapshot.probers)
        probers.add_metric(["fresh"], float(len(known - stale)))
        probers.add_metric(["stale"], float(len(known & stale)))
        yield probers
        heartbeat = GaugeMetricFamily(
            "gslb_prober_heartbeat_age_seconds",
            "Age of each prober's heartbeat when the store was last read",
            labels=["prober"],
        )
        for prober_id, report in sorted(sync.snapshot.probers.items()):
            heartbeat.add_metric([prober_id], max(0.0, sync.snapshot.read_at - report.heartbeat_at))
        yield heartbeat
        yield from self._staleness()

    def _staleness(self) -> Iterator[Metric]:
        sync = self.context.sync
        picture = sync.staleness
        stale = GaugeMetricFamily(
            "gslb_prober_stale",
            "1 when the prober's heartbeat is stale (left out of the vote)",
            labels=["prober"],
        )
        since = GaugeMetricFamily(
            "gslb_prober_stale_since_timestamp_seconds",
            "When each stale prober's heartbeat went stale",
            labels=["prober"],
        )
        for prober_id in sorted(sync.snapshot.probers):
            went = picture.stale_since.get(prober_id)
            stale.add_metric([prober_id], 0.0 if went is None else 1.0)
            if went is not None:
                since.add_metric([prober_id], went)
        hold = picture.hold
        holding = hold is not None and not hold.released
        held = GaugeMetricFamily(
            "gslb_health_held",
            "1 while no prober is fresh and the last verdicts hold (static stability)",
            value=1.0 if holding else 0.0,
        )
        held_for = GaugeMetricFamily(
            "gslb_health_held_seconds", "Seconds since no prober is fresh (when the store was last read)"
        )
        if hold is not None:
            held_for.add_metric([], max(0.0, sync.snapshot.read_at - hold.since))
        counts = GaugeMetricFamily(
            "gslb_endpoints_held",
            "Endpoints kept not up by held verdicts of stale probers",
            labels=["health"],
        )
        by_health = Counter(picture.held.values())
        for health in (Health.DOWN, Health.DEGRADED):
            counts.add_metric([health.value], float(by_health[health]))
        per_endpoint = GaugeMetricFamily(
            "gslb_endpoint_held", "1 while held verdicts keep the endpoint not up", labels=["endpoint"]
        )
        for endpoint_id in sorted(picture.held):
            per_endpoint.add_metric([endpoint_id], 1.0)
        yield from (stale, since, held, held_for, counts, per_endpoint)

    def _details(self) -> Iterator[Metric]:
        details = self.details
        if details is None:
            return
        labels = ["endpoint", "prober"]
        ewma = GaugeMetricFamily("gslb_endpoint_rtt_ewma_seconds", "EWMA of check RTT", labels=labels)
        baseline = GaugeMetricFamily(
            "gslb_endpoint_rtt_baseline_seconds", "Slow long-run EWMA of successful check RTT", labels=labels
        )
        ok = GaugeMetricFamily("gslb_endpoint_check_ok", "1 when the last check passed", labels=labels)
        checked = GaugeMetricFamily(
            "gslb_endpoint_last_check_timestamp_seconds", "When the last check ran", labels=labels
        )
        health = GaugeMetricFamily(
            "gslb_endpoint_prober_health",
            "One prober's verdict: 2 up, 1 degraded, 0 down",
            labels=labels,
        )
        for prober_id, report in sorted(details.probers.items()):
            for endpoint_id, state in sorted(report.states.items()):
                key = [endpoint_id, prober_id]
                health.add_metric(key, HEALTH_VALUE[state.health])
                if state.ewma_rtt_ms is not None:
                    ewma.add_metric(key, state.ewma_rtt_ms / 1000.0)
                if state.baseline_rtt_ms is not None:
                    baseline.add_metric(key, state.baseline_rtt_ms / 1000.0)
                if state.last_ok is not None:
                    ok.add_metric(key, 1.0 if state.last_ok else 0.0)
                if state.checked_at is not None:
                    checked.add_metric(key, state.checked_at)
        yield from (ewma, baseline, ok, checked, health)

    def _prober(self) -> Iterator[Metric]:
        slot = self.context.probers
        prober = slot.prober if slot is not None else None
        if prober is None:
            return
        stats = prober.stats
        pid = [prober.prober_id]
        checks = CounterMetricFamily(
            "gslb_probe_checks", "Checks run by this process's prober", labels=["prober", "result"]
        )
        checks.add_metric([*pid, "ok"], float(stats.checks - stats.failures))
        checks.add_metric([*pid, "fail"], float(stats.failures - stats.timeouts))
        checks.add_metric([*pid, "timeout"], float(stats.timeouts))
        yield checks
        yield _counter("gslb_probe_errors", "Checks that raised unexpectedly", pid, stats.errors)
        yield _counter("gslb_probe_late", "Checks that started over one interval late", pid, stats.late)
        yield _counter(
            "gslb_probe_check_duration_seconds", "Total time spent in checks", pid, stats.check_seconds
        )
        yield _gauge(
            "gslb_probe_check_duration_seconds_max", "Longest check so far", pid, stats.max_check_seconds
        )
        yield _gauge("gslb_probe_targets", "Distinct (check, address) targets probed", pid, stats.targets)
        writes = CounterMetricFamily(
            "gslb_probe_writes", "State writes to the store", labels=["prober", "result"]
        )
        writes.add_metric([*pid, "ok"], float(stats.writes))
        writes.add_metric([*pid, "fail"], float(stats.write_failures))
        yield writes

    def _api(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "gslb_api_drain_requests",
            "Authorized drain and undrain requests, by result",
            labels=["action", "result"],
        )
        for (action, result), count in sorted(self.api_requests.items()):
            requests.add_metric([action, result], float(count))
        yield requests

    def _tcp(self) -> Iterator[Metric]:
        if self.context.tcp is None:
            return
        stats = self.context.tcp()
        connections = GaugeMetricFamily(
            "gslb_tcp_connections", "Open DNS-over-TCP connections, by state", labels=["state"]
        )
        connections.add_metric(["idle"], float(stats.idle))
        connections.add_metric(["busy"], float(stats.connections - stats.idle))
        yield connections
        yield CounterMetricFamily(
            "gslb_tcp_accepted", "DNS-over-TCP connections admitted", value=float(stats.accepted)
        )
        refused = CounterMetricFamily(
            "gslb_tcp_refused",
            "DNS-over-TCP connections refused, by the cap that refused them",
            labels=["reason"],
        )
        for reason, count in stats.refused.items():
            refused.add_metric([reason.value], float(count))
        yield refused
        yield CounterMetricFamily(
            "gslb_tcp_idle_closed",
            "Idle DNS-over-TCP connections closed to make room for a new one at the total cap",
            value=float(stats.idle_closed),
        )
        timeouts = CounterMetricFamily(
            "gslb_tcp_timeouts", "DNS-over-TCP connections closed by a timeout", labels=["kind"]
        )
        timeouts.add_metric(["idle"], float(stats.idle_timeouts))
        timeouts.add_metric(["read"], float(stats.read_timeouts))
        yield timeouts

    def _reloads(self) -> Iterator[Metric]:
        responder = self.context.responder
        if responder is None:
            return
        reloads = CounterMetricFamily(
            "gslb_reload", "SIGHUP reloads of config and zones, by result", labels=["result"]
        )
        for result in ("ok", "failed"):
            reloads.add_metric([result], float(responder.reloads[result]))
        yield reloads
        serials = GaugeMetricFamily("gslb_zone_serial", "SOA serial of each zone answered", labels=["zone"])
        for origin, serial in sorted(responder.serials().items()):
            serials.add_metric([origin], float(serial))
        yield serials
        last = responder.last_reload
        if last is not None:
            yield GaugeMetricFamily(
                "gslb_config_last_reload_success",
                "1 when the last reload worked, 0 when it failed (the previous config is served)",
                value=1.0 if last.ok else 0.0,
            )

    def _fleet(self) -> Iterator[Metric]:
        records = self.responders
        if records is None:
            return
        now = self.clock()
        status = {r.id: responder_status(r, now=now) for r in records}
        counts = GaugeMetricFamily("gslb_responders", "Registered responders, by status", labels=["status"])
        for candidate in ResponderStatus:
            counts.add_metric([candidate.value], float(sum(1 for s in status.values() if s is candidate)))
        yield counts
        info = GaugeMetricFamily(
            "gslb_responder_info",
            "1 per registered responder, with what it runs",
            labels=["responder", "host", "version", "config_hash", "identity"],
        )
        up = GaugeMetricFamily(
            "gslb_responder_up", "1 when the responder's heartbeat is fresh", labels=["responder"]
        )
        heartbeat = GaugeMetricFamily(
            "gslb_responder_heartbeat_age_seconds", "Age of each responder's heartbeat", labels=["responder"]
        )
        serial = GaugeMetricFamily(
            "gslb_responder_zone_serial",
            "SOA serial each responder answers with",
            labels=["responder", "zone"],
        )
        reload_ok = GaugeMetricFamily(
            "gslb_responder_last_reload_success",
            "1 when the responder's last reload worked, 0 when it failed",
            labels=["responder"],
        )
        reload_at = GaugeMetricFamily(
            "gslb_responder_last_reload_timestamp_seconds", "When the last reload ran", labels=["responder"]
        )
        version = GaugeMetricFamily(
            "gslb_responder_state_version", "Store version each responder answers from", labels=["responder"]
        )
        sync_age = GaugeMetricFamily(
            "gslb_responder_sync_age_seconds",
            "Age of each responder's last read of the store (at its heartbeat)",
            labels=["responder"],
        )
        answers = CounterMetricFamily(
            "gslb_responder_answers",
            "Steered replies of each responder by the datacenter they carry",
            labels=["responder", "datacenter"],
        )
        rates = GaugeMetricFamily(
            "gslb_responder_answers_per_second",
            "Steered replies per second over the responder's last few seconds",
            labels=["responder", "datacenter"],
        )
        for r in records:
            rid = [r.id]
            info.add_metric([r.id, r.host, r.version, r.config_hash, r.identity], 1.0)
            up.add_metric(rid, 1.0 if status[r.id] is ResponderStatus.UP else 0.0)
            heartbeat.add_metric(rid, max(0.0, now - r.at))
            for origin, value in sorted(r.serials.items()):
                serial.add_metric([r.id, origin], float(value))
            if r.last_reload is not None:
                reload_ok.add_metric(rid, 1.0 if r.last_reload.ok else 0.0)
                reload_at.add_metric(rid, r.last_reload.at)
            version.add_metric(rid, float(r.state_version))
            if r.sync_age_s is not None:
                sync_age.add_metric(rid, r.sync_age_s)
            for dc, count in sorted(r.answers.items()):
                answers.add_metric([r.id, dc], float(count))
            for dc, rate in sorted(r.answers_per_s.items()):
                rates.add_metric([r.id, dc], rate)
        yield from (info, up, heartbeat, serial, reload_ok, reload_at, version, sync_age, answers, rates)
        live = live_responders(records, now=now)
        drift = serial_drift(live)
        zones = GaugeMetricFamily(
            "gslb_zone_serial_drift",
            "1 while live responders answer the zone with different serials",
            labels=["zone"],
        )
        for origin in sorted({o for r in live for o in r.serials}):
            zones.add_metric([origin], 1.0 if origin in drift else 0.0)
        yield zones
        yield GaugeMetricFamily(
            "gslb_config_drift",
            "1 while live responders run different config files (sha256 of the bytes)",
            value=1.0 if config_drift(live) else 0.0,
        )


def _counter(name: str, doc: str, labels: list[str], value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["prober"])
    family.add_metric(labels, float(value))
    return family


def _gauge(name: str, doc: str, labels: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["prober"])
    family.add_metric(labels, float(value))
    return family


def registry_for(collector: GslbCollector) -> CollectorRegistry:
    """A registry of our own (not the process-global one): our collector and process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
