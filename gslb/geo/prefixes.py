"""A set of IP prefixes of one family, answering the three questions the locator asks of it.

Pure helper of `gslb.geo`: standard library only, no ipaddress objects (prefixes are
`(start, length)` pairs of ints, so that the query path does integer arithmetic only). It must
not import geoip2, maxminddb or anything outside `gslb.geo`.

The questions: which entry is the longest match for an address; is any entry strictly inside
a prefix; and, for an address in a prefix that holds entries not containing the address, what
is the largest prefix around the address that overlaps none of them (the narrowing that keeps
an ECS scope from claiming an override's clients).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class PrefixTable(Generic[T]):
    """Immutable set of `(start, length) -> value` entries in a `bits`-wide address space."""

    __slots__ = ("_bits", "_by_length", "_lengths", "_lengths_desc", "_starts")

    def __init__(self, bits: int, entries: Iterable[tuple[int, int, T]]) -> None:
        """Build from `(start, length, value)`; starts must have no bits set past `length`.

        A later entry with the same prefix as an earlier one is rejected (ValueError): the
        caller decides what duplicates mean, this table does not guess.
        """
        self._bits = bits
        by_length: dict[int, dict[int, tuple[int, int, T]]] = {}
        for start, length, value in entries:
            if not 0 <= length <= bits or start >> bits or start & ((1 << (bits - length)) - 1):
                raise ValueError(f"not a {bits}-bit prefix: {start:#x}/{length}")
            keyed = by_length.setdefault(length, {})
            key = start >> (bits - length)
            if key in keyed:
                raise ValueError(f"duplicate prefix {start:#x}/{length}")
            keyed[key] = (start, length, value)
        self._by_length = by_length
        self._lengths_desc = tuple(sorted(by_length, reverse=True))
        ordered = sorted(
            (start, length) for keyed in by_length.values() for start, length, _ in keyed.values()
        )
        # Sorted by (start, length): among entries sharing a start the shorter (outer) ones
        # come first, which `inside` and `narrow` rely on.
        self._starts = [start for start, _ in ordered]
        self._lengths = [length for _, length in ordered]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def longest_match(self, address: int, max_length: int | None = None) -> tuple[int, int, T] | None:
        """The longest entry containing `address` (no longer than `max_length`), or None."""
        bits = self._bits
        by_length = self._by_length
        for length in self._lengths_desc:
            if max_length is not None and length > max_length:
                continue
            entry = by_length[length].get(address >> (bits - length))
            if entry is not None:
                return entry
        return None

    def inside(self, start: int, length: int) -> bool:
        """True when some entry lies strictly inside the prefix `start/length`."""
        end = start | ((1 << (self._bits - length)) - 1)
        hi = bisect_right(self._starts, end)
        if hi == 0 or self._starts[hi - 1] < start:
            return False
        # The last entry in range has the largest start and, for that start, the largest
        # length; an entry starting after `start` is necessarily longer than `length`.
        return self._lengths[hi - 1] > length

    def narrow(self, address: int, start: int, length: int) -> int:
        """Length of the largest prefix that holds `address`, lies in `start/length` and
        overlaps no entry strictly inside `start/length`.

        The caller guarantees that no entry strictly inside contains `address` (it looked up
        the longest match first); entries equal to or containing `start/length` are ignored.
        """
        bits = self._bits
        starts = self._starts
        end = start | ((1 << (bits - length)) - 1)
        lo = bisect_left(starts, start)
        hi = bisect_right(starts, end, lo)
        if lo == hi or self._lengths[hi - 1] <= length:
            return length
        # The entry sharing the longest common prefix with `address` is its neighbour in
        # sorted order, so two candidates decide: the next start above and the last below.
        best = length
        above = bisect_right(starts, address, lo, hi)
        if above < hi:
            best = max(best, bits - (address ^ starts[above]).bit_length() + 1)
        below = above - 1
        if below >= lo and not (starts[below] == start and self._lengths[below] <= length):
            best = max(best, bits - (address ^ starts[below]).bit_length() + 1)
        return best
