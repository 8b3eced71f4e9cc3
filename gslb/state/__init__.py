"""Shared state: the store contract, the in-memory and Redis stores, and the responder's sync.

Adapter package; `gslb.state.redis_store` is the only module in gslb that imports redis, and
it is imported only when a Redis URL is configured.
"""

from gslb.state.codec import from_redis, snapshot_from_json, snapshot_to_json, to_redis
from gslb.state.record import AuditAction, AuditEntry, Heartbeat, Hint, Poll
from gslb.state.snapshot_file import load_snapshot, save_snapshot
from gslb.state.store import MemoryStore, Store, Subscription, open_store
from gslb.state.sync import HealthSync

__all__ = [
    "AuditAction",
    "AuditEntry",
    "HealthSync",
    "Heartbeat",
    "Hint",
    "MemoryStore",
    "Poll",
    "Store",
    "Subscription",
    "from_redis",
    "load_snapshot",
    "open_store",
    "save_snapshot",
    "snapshot_from_json",
    "snapshot_to_json",
    "to_redis",
]
