"""What the api reads and writes, handed over by the composition root.

Adapter-free: plain references to the live parts of the process. In embedded mode
(`gslb serve` without Redis) the responder and prober are in the same process and are set;
a standalone `gslb api` has only the store, the health sync and its own parts (for explain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gslb.dns.connections import TcpStats
from gslb.probe.slot import ProberSlot
from gslb.responder import Parts, Responder
from gslb.state.store import Store
from gslb.state.sync import HealthSync


@dataclass
class ApiContext:
    parts: Callable[[], Parts]  # the current config, locator and handler (changes on SIGHUP)
    store: Store
    sync: HealthSync
    probers: ProberSlot | None = None  # embedded mode: this process probes (slot.prober)
    responder_local: bool = False  # embedded mode: this process answers DNS (handler counters are ours)
    tcp: Callable[[], TcpStats] | None = None  # this process's DNS-over-TCP counters, once it listens
    responder: Responder | None = None  # this process's responder (reload counters, zone serials)
