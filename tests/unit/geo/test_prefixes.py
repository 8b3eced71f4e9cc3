"""PrefixTable: longest match, entries strictly inside, narrowing (checked against brute force)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.geo.prefixes import PrefixTable

BITS = 8  # small address space, so brute force can check every address


def prefix(text: str) -> tuple[int, int]:
    """'0b1010/4' -> (0b10100000, 4) in the 8-bit test space."""
    bits, length = text.split("/")
    value = int(bits, 2) if bits else 0
    return value << (BITS - int(length)), int(length)


def table(*texts: str) -> PrefixTable[str]:
    return PrefixTable(BITS, [(*prefix(t), t) for t in texts])


def test_empty_table() -> None:
    empty = table()
    assert not empty and len(empty) == 0
    assert empty.longest_match(5) is None
    assert not empty.inside(0, 0)
    assert empty.narrow(5, 0, 0) == 0


def test_longest_match() -> None:
    t = table("/0", "1/1", "101/3", "1011/4")
    assert t.longest_match(0b1011_0000) == (0b1011_0000, 4, "1011/4")
    assert t.longest_match(0b1010_0000) == (0b1010_0000, 3, "101/3")
    assert t.longest_match(0b1100_0000) == (0b1000_0000, 1, "1/1")
    assert t.longest_match(0b0000_0001) == (0, 0, "/0")
    assert t.longest_match(0b1011_0000, max_length=3) == (0b1010_0000, 3, "101/3")
    assert t.longest_match(0b1011_0000, max_length=0) == (0, 0, "/0")


@pytest.mark.parametrize(
    ("entries", "query", "inside"),
    [
        (("1/1",), "1/1", False),
        (("1/1",), "/0", True),
        (("1/1",), "0/1", False),
        (("10/2", "1/1"), "1/1", True),
        (("1/1", "/0"), "1/1", False),
        (("11111111/8",), "1111111/7", True),
        (("0/1",), "1/1", False),
    ],
    ids=["equal", "below-root", "sibling", "nested", "containers-only", "host", "after"],
)
def test_inside(entries: tuple[str, ...], query: str, inside: bool) -> None:
    assert table(*entries).inside(*prefix(query)) is inside


def test_bad_entries() -> None:
    with pytest.raises(ValueError, match="not a 8-bit prefix"):
        PrefixTable(BITS, [(1, 4, "x")])
    with pytest.raises(ValueError, match="not a 8-bit prefix"):
        PrefixTable(BITS, [(0, 9, "x")])
    with pytest.raises(ValueError, match="duplicate prefix"):
        PrefixTable(BITS, [(0, 4, "x"), (0, 4, "y")])


def brute_narrow(entries: list[tuple[int, int]], address: int, start: int, length: int) -> int:
    """The definition: the shortest length >= `length` whose prefix around `address` overlaps
    no entry strictly inside `start/length`."""

    def cover(s: int, n: int) -> set[int]:
        return set(range(s, s + (1 << (BITS - n))))

    outer = cover(start, length)
    inner = [cover(s, n) for s, n in entries if n > length and cover(s, n) <= outer]
    for candidate in range(length, BITS + 1):
        shift = BITS - candidate
        around = cover(address >> shift << shift, candidate)
        if not any(around & other for other in inner):
            return candidate
    raise AssertionError("no prefix avoids the entries")


prefixes = st.integers(min_value=0, max_value=BITS).flatmap(
    lambda n: st.tuples(
        st.integers(min_value=0, max_value=(1 << n) - 1).map(lambda v: v << (BITS - n)), st.just(n)
    )
)


@settings(max_examples=500)
@given(entries=st.lists(prefixes, max_size=12, unique=True), address=st.integers(min_value=0, max_value=255))
def test_narrow_matches_brute_force(entries: list[tuple[int, int]], address: int) -> None:
    t = PrefixTable(BITS, [(s, n, None) for s, n in entries])
    match = t.longest_match(address)
    if match is None:
        # As for a database network: try every prefix around the address that holds no entry
        # containing the address.
        for length in range(BITS + 1):
            start = address >> (BITS - length) << (BITS - length)
            assert t.narrow(address, start, length) == brute_narrow(entries, address, start, length)
    else:
        start, length, _ = match
        assert t.narrow(address, start, length) == brute_narrow(entries, address, start, length)


@settings(max_examples=300)
@given(entries=st.lists(prefixes, max_size=12, unique=True), query=prefixes)
def test_inside_matches_brute_force(entries: list[tuple[int, int]], query: tuple[int, int]) -> None:
    start, length = query
    end = start + (1 << (BITS - length)) - 1
    expected = any(n > length and start <= s <= end for s, n in entries)
    assert PrefixTable(BITS, [(s, n, None) for s, n in entries]).inside(start, length) is expected
