"""The reply cache: packed replies without their ID, bounded, evicted a little at a time.

Adapter detail of `gslb.dns` (standard library only). Keys are explicit (`ReplyKey`): the
request bytes after the ID for a reply that holds for every client (`Cacheability.ALL`), the
client address and those bytes for one that depends on the sender (`PER_CLIENT`: a steered
name asked without a usable ECS subnet). The handler keeps a second instance of the same
type for the *shapes* of ECS queries (the request without its ID and ECS address), whose
values hold the replies built per decision and scope.

Eviction is by generations, so that nothing is ever cleared at once: entries go into a young
dict; when it holds half the limit it becomes the old one, and the previous old one is
retired and emptied two entries per insertion (`dict.popitem`, O(1)). A lookup tries young,
then old. Values are plain tuples of bytes and ints, which the garbage collector untracks,
so a flood of unique questions costs memory up to the bound and no collector pauses.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

V = TypeVar("V")

ReplyKey = bytes | tuple[str, bytes]


class Cacheability(enum.Enum):
    ALL = "all"  # the reply depends on the request bytes only
    PER_CLIENT = "per_client"  # ... and on the sender's address
    NEVER = "never"  # errors and anything cheap to rebuild or rare


class ReplyCache(Generic[V]):
    __slots__ = ("_half", "_retiring", "old", "young")

    def __init__(self, limit: int) -> None:
        self._half = max(1, limit // 2)
        self.young: dict[object, V] = {}
        self.old: dict[object, V] = {}
        self._retiring: dict[object, V] = {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old) + len(self._retiring)

    def get(self, key: object) -> V | None:
        value = self.young.get(key)
        if value is None:
            value = self.old.get(key)
        return value

    def put(self, key: object, value: V) -> None:
        young = self.young
        young[key] = value
        retiring = self._retiring
        if retiring:
            retiring.popitem()
            if retiring:
                retiring.popitem()
        if len(young) >= self._half:
            # Two pops per insertion have emptied the retired generation by now.
            self._retiring = self.old
            self.old = young
            self.young = {}

    def clear(self) -> None:
        """Drop everything (small caches only: the shapes, on a health change)."""
        self.young = {}
        self.old = {}
        self._retiring = {}
