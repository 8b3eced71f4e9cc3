"""The compiled steering map against `Locator.locate`: maximal blocks, every address in a block
classified alike, overrides, IPv4-mapped and MIXED IPv6, the byte form and the disk cache."""

from __future__ import annotations

import array
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.config.model import Override
from gslb.geo import Location, Locator
from gslb.geo import steermap as steermap_module
from gslb.geo.steermap import MIXED, Classifier, SteerMap, compile_maps, load_or_compile

DATA = Path(__file__).resolve().parents[2] / "data" / "geoip"
CITY = DATA / "GeoIP2-City-Test.mmdb"
LITE_CITY = DATA / "GeoLite2-City-Test.mmdb"
COUNTRY = DATA / "GeoIP2-Country-Test.mmdb"

WriteMmdb = Callable[..., Path]  # the `mmdb` fixture of conftest.py
IPAddress = IPv4Address | IPv6Address

DATACENTERS = {"ams": (52.37, 4.90), "iad": (39.04, -77.49), "sin": (1.35, 103.82)}
DEFAULT_ORDER = ("iad", "ams", "sin")
AMS_FIRST = ("ams", "iad", "sin")
SIN_FIRST = ("sin", "ams", "iad")
PINNED_SIN = ("sin", "iad", "ams")


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance in radians."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * math.asin(math.sqrt(h))


def nearest(location: Location) -> tuple[str, ...]:
    """Datacenters by distance; a pinned one first; unknown -> the default order."""
    if location.datacenter is not None:
        return (location.datacenter, *(name for name in DEFAULT_ORDER if name != location.datacenter))
    if location.latitude is None or location.longitude is None:
        return DEFAULT_ORDER
    here = (location.latitude, location.longitude)
    return tuple(sorted(DATACENTERS, key=lambda name: distance(here, DATACENTERS[name])))


def by_continent(location: Location) -> tuple[str, ...]:
    return {"EU": AMS_FIRST, "AS": SIN_FIRST}.get(location.continent or "", DEFAULT_ORDER)


def everywhere(location: Location) -> tuple[str, ...]:
    return ("ams",)


OVERRIDES = (
    Override(ip_network("81.2.69.142/32"), datacenter="iad"),  # a host inside the London /31
    Override(ip_network("81.2.69.176/28"), datacenter="sin"),  # splits the London /27
    Override(ip_network("175.16.0.0/16"), latitude=52.37, longitude=4.90),  # holds Changchun's /24
    Override(ip_network("175.16.199.128/25"), datacenter="sin"),  # nested in the /16
    Override(ip_network("1.1.1.0/24"), datacenter="ams"),  # inside an empty /8
    Override(ip_network("2001:218::/48"), datacenter="ams"),  # inside the JP /32
    Override(ip_network("2001:218:0:8000::/49"), datacenter="iad"),  # nested, at the /48's edge
    Override(ip_network("2a02:cf40::/64"), datacenter="iad"),  # a whole /64 of the NO /29
    Override(ip_network("2a02:cf40:0:1::/80"), datacenter="iad"),  # deeper than /64: MIXED
)


@pytest.fixture(scope="module")
def city() -> Iterator[Locator]:
    with Locator(CITY) as locator:
        yield locator


@pytest.fixture(scope="module")
def overridden() -> Iterator[Locator]:
    with Locator(CITY, OVERRIDES) as locator:
        yield locator


@pytest.fixture(scope="module")
def overridden_map(overridden: Locator) -> SteerMap:
    (steer_map,) = compile_maps(overridden, [nearest])
    return steer_map


def order_of(
    steer_map: SteerMap, locator: Locator, classifier: Classifier, address: IPAddress
) -> tuple[str, ...]:
    """What a caller does: the block's class, or for a MIXED block the direct lookup."""
    class_id, _ = steer_map.find(address)
    return classifier(locator.locate(address)) if class_id == MIXED else steer_map.classes[class_id]


def block_of(address: IPAddress, length: int) -> tuple[int, int]:
    """First and last address of the `length` block holding `address`."""
    bits = address.max_prefixlen
    first = int(address) >> (bits - length) << (bits - length)
    return first, first | ((1 << (bits - length)) - 1)


def assert_block_holds(
    steer_map: SteerMap, locator: Locator, classifier: Classifier, address: IPAddress, rng: random.Random
) -> None:
    """The property the DNS layer relies on: the block's class is every address's class."""
    class_id, length = steer_map.find(address)
    if class_id == MIXED:
        assert isinstance(address, IPv6Address)
        assert length <= 64
        assert address.ipv4_mapped is None
        return
    expected = steer_map.classes[class_id]
    assert classifier(locator.locate(address)) == expected, address
    first, last = block_of(address, length)
    kind = type(address)
    for value in (first, last, rng.randint(first, last), rng.randint(first, last)):
        assert classifier(locator.locate(kind(value))) == expected, (address, length, kind(value))


def check_tiling(steer_map: SteerMap) -> None:
    """Blocks tile each space in order, are aligned, and are maximal (no same-class siblings)."""
    for starts, info, width in (
        (steer_map.starts_v4, steer_map.info_v4, 32),
        (steer_map.starts_v6, steer_map.info_v6, 64),
    ):
        assert starts[0] == 0
        end = 0
        previous: tuple[int, int] | None = None
        for start, packed in zip(starts, info, strict=True):
            class_id, length = packed >> 8, packed & 0xFF
            assert start == end
            assert start % (1 << (width - length)) == 0
            assert class_id == MIXED or class_id < len(steer_map.classes)
            if previous is not None and class_id != MIXED:
                before_length, before_class = previous
                is_right_half = length > 0 and (start >> (width - length)) & 1
                assert not (is_right_half and before_length == length and before_class == class_id), hex(
                    start
                )
            previous = (length, class_id)
            end = start + (1 << (width - length))
        assert end == 1 << width


# --- the search tree as one array -------------------------------------------------------------


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_tree_records_match_children(mmdb: WriteMmdb, record_size: int) -> None:
    networks = [(f"10.{i}.0.0/16", {"country": {"iso_code": "NL"}}) for i in range(0, 256, 7)]
    with Locator(mmdb(networks, record_size=record_size)) as locator, Locator(CITY) as city:
        for tree in (locator.search_tree, city.search_tree):
            records = tree.records()
            assert len(records) == 2 * tree.node_count
            for node in range(tree.node_count):
                assert (records[2 * node], records[2 * node + 1]) == tree.children(node)


# --- semantics on MaxMind's test database ----------------------------------------------------


@pytest.mark.parametrize(
    ("address", "order", "length"),
    [
        ("81.2.69.143", AMS_FIRST, 32),  # London /31 minus the pinned .142
        ("81.2.69.142", DEFAULT_ORDER, 32),  # pinned to iad
        ("81.2.69.160", AMS_FIRST, 28),  # London /27 minus the sin-pinned /28
        ("81.2.69.180", PINNED_SIN, 28),
        ("175.16.199.1", AMS_FIRST, 25),  # override coordinates, around the nested /25
        ("175.16.199.200", PINNED_SIN, 25),
        ("1.1.1.1", AMS_FIRST, 24),
        ("216.160.83.56", DEFAULT_ORDER, None),  # Milton, US: iad first, as unknown clients
        ("::ffff:81.2.69.160", AMS_FIRST, 124),  # mapped: the IPv4 block + 96
        ("2001:218:1::1", SIN_FIRST, 48),  # JP /32 minus the overrides
        ("2001:218::1", AMS_FIRST, 49),
        ("2001:218:0:8000::1", DEFAULT_ORDER, 49),
        ("2a02:cf40::1", DEFAULT_ORDER, 64),
    ],
)
def test_known_blocks(
    overridden_map: SteerMap, address: str, order: tuple[str, ...], length: int | None
) -> None:
    class_id, found_length = overridden_map.find(ip_address(address))
    assert overridden_map.classes[class_id] == order
    if length is not None:
        assert found_length == length


def test_blocks_are_as_wide_as_the_class_allows(city: Locator) -> None:
    (steer_map,) = compile_maps(city, [nearest])
    # London's .144/28, .160/27 and .192/28 are separate records of one class: .160/27 stays
    # a /27 (its sibling .128/27 also holds empty space), the empty 1.0.0.0/8 merges with more.
    assert steer_map.find(ip_address("81.2.69.170")) == (steer_map.classes.index(AMS_FIRST), 27)
    assert steer_map.find(ip_address("81.2.69.142"))[1] == 31
    assert steer_map.find(ip_address("1.1.1.1"))[1] <= 8
    check_tiling(steer_map)


def test_ipv6_low_64_and_deep_overrides_are_mixed(overridden_map: SteerMap, overridden: Locator) -> None:
    for address in ("::1", "::1.2.3.4", "::1:0:0:0", "2a02:cf40:0:1::1"):
        assert overridden_map.find(ip_address(address)) == (MIXED, 64), address
    # The caller locates a MIXED client directly: the /80 override and the rest of its /64.
    assert order_of(overridden_map, overridden, nearest, ip_address("2a02:cf40:0:1::1")) == DEFAULT_ORDER
    assert order_of(overridden_map, overridden, nearest, ip_address("2a02:cf40:0:1:1::1")) == AMS_FIRST


def test_a_mixed_64_uses_the_direct_lookup(mmdb: WriteMmdb) -> None:
    path = mmdb(
        [
            ("2001:db8::/65", {"location": {"latitude": 52.0, "longitude": 5.0}}),
            ("2001:db8:0:0:8000::/65", {"location": {"latitude": 1.0, "longitude": 104.0}}),
            ("2001:db8:0:1::/65", {"location": {"latitude": 52.0, "longitude": 5.0}}),
            ("2001:db8:0:1:8000::/65", {"location": {"latitude": 52.0, "longitude": 5.1}}),
            ("2001:db8:0:2::/64", {"location": {"latitude": 1.0, "longitude": 104.0}}),
        ]
    )
    with Locator(path) as locator:
        (steer_map,) = compile_maps(locator, [nearest])
        low, high = ip_address("2001:db8::1"), ip_address("2001:db8::8000:0:0:1")
        assert steer_map.find(low) == steer_map.find(high) == (MIXED, 64)
        assert order_of(steer_map, locator, nearest, low) == AMS_FIRST
        assert order_of(steer_map, locator, nearest, high) == SIN_FIRST
        # The tree goes below /64 there, so it is MIXED even though both halves agree.
        assert steer_map.find(ip_address("2001:db8:0:1::1")) == (MIXED, 64)
        assert steer_map.find(ip_address("2001:db8:0:2::1")) == (steer_map.classes.index(SIN_FIRST), 64)
        check_tiling(steer_map)


def test_6to4_and_teredo_follow_the_ipv4_data_not_the_ipv4_overrides(
    overridden_map: SteerMap, city: Locator
) -> None:
    # 2002:5102:45b0:: is 6to4 for 81.2.69.176, which an IPv4 override pins to sin; the locator
    # applies IPv4 overrides to IPv4 and mapped clients only, so this is London.
    # 2001:0:5102:45b0:: is Teredo with the same IPv4 address in bits 32-63.
    for address, length in (("2002:5102:45b0::1", 16 + 27), ("2001:0:5102:45b0::1", 32 + 27)):
        assert city.locate(ip_address(address)).city == "London"
        class_id, found_length = overridden_map.find(ip_address(address))
        assert (overridden_map.classes[class_id], found_length) == (AMS_FIRST, length)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_address_of_a_block_gets_its_class(
    overridden_map: SteerMap, overridden: Locator, data: st.DataObject
) -> None:
    networks = [
        *(override.network for override in OVERRIDES),
        *map(
            ip_network,
            (
                "81.2.69.128/25",
                "175.16.198.0/23",
                "216.160.83.0/24",
                "89.160.20.0/24",
                "2.125.160.0/24",
                "67.43.156.0/23",
                "0.0.0.0/0",
                "2001:218::/31",
                "2001:220::/32",
                "2a02:cf40::/29",
                "2002::/16",
                "2001::/32",
                "::ffff:0:0/96",
                "::/0",
            ),
        ),
    ]
    network = data.draw(st.sampled_from(networks))
    value = data.draw(st.integers(int(network.network_address), int(network.broadcast_address)))
    address = ip_address(value) if network.version == 4 else IPv6Address(value)
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    assert_block_holds(overridden_map, overridden, nearest, address, rng)


@pytest.mark.parametrize("path", [CITY, LITE_CITY, COUNTRY], ids=["city", "lite-city", "country"])
def test_whole_test_databases(path: Path) -> None:
    with Locator(path, OVERRIDES) as locator:
        steer_maps = compile_maps(locator, [nearest, by_continent])
        rng = random.Random(7)
        for steer_map, classifier in zip(steer_maps, (nearest, by_continent), strict=True):
            check_tiling(steer_map)
            # A few addresses in every block, IPv4 and IPv6.
            for starts, info, width in (
                (steer_map.starts_v4, steer_map.info_v4, 32),
                (steer_map.starts_v6, steer_map.info_v6, 64),
            ):
                for start, packed in zip(starts, info, strict=True):
                    size = 1 << (width - (packed & 0xFF))
                    value = rng.randrange(start, start + size)
                    address = (
                        IPv4Address(value) if width == 32 else IPv6Address(value << 64 | rng.getrandbits(64))
                    )
                    assert_block_holds(steer_map, locator, classifier, address, rng)


def test_several_classifiers_make_the_maps_each_would_alone(overridden: Locator, city: Locator) -> None:
    together = compile_maps(overridden, [nearest, by_continent, everywhere])
    alone = [compile_maps(overridden, [classifier])[0] for classifier in (nearest, by_continent, everywhere)]
    assert together == alone
    (uniform,) = compile_maps(city, [everywhere])
    assert uniform.classes == (("ams",),)
    assert list(uniform.starts_v4) == [0]
    # IPv6: ::/64 is MIXED (mapped clients), the rest merges into one block per bit.
    assert [(info >> 8, info & 0xFF) for info in uniform.info_v6] == [(MIXED, 64)] + [
        (0, n) for n in range(64, 0, -1)
    ]
    assert compile_maps(overridden, []) == []


def test_each_record_is_decoded_once(monkeypatch: pytest.MonkeyPatch, city: Locator) -> None:
    seen: list[int] = []
    original = Locator.record_location

    def counting(
        self: Locator, record: int, address: IPAddress, network: IPv4Network | IPv6Network
    ) -> Location:
        seen.append(record)
        return original(self, record, address, network)

    monkeypatch.setattr(Locator, "record_location", counting)
    compile_maps(city, [nearest, by_continent])
    assert seen
    assert len(seen) == len(set(seen))


def aliased_database(mmdb: WriteMmdb, networks: list[tuple[str, dict[str, object]]], alias: str) -> Path:
    """An IPv6 database (32-bit records) in which `alias` leads to the IPv4 tree, as 2002::/16
    (6to4) and 2001::/32 (Teredo) do in MaxMind's databases."""
    prefix = ip_network(alias)
    path = mmdb([*networks, (alias, {"location": {"latitude": 0.0, "longitude": 0.0}})], record_size=32)
    value, length = int(prefix.network_address), prefix.prefixlen
    with Locator(path) as locator:
        tree = locator.search_tree
        parent, depth = tree.descend(tree.ipv6_root, value, 128, length - 1)
        assert depth == length - 1 and parent < tree.node_count
        ipv4_root = tree.ipv4_root
    data = bytearray(path.read_bytes())
    offset = parent * 8 + 4 * ((value >> (128 - length)) & 1)
    data[offset : offset + 4] = ipv4_root.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


class CountingRecords(Sequence[int]):
    """The tree's records, counting how many are read."""

    reads = 0

    def __init__(self, records: array.array[int]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> int:  # type: ignore[override]
        CountingRecords.reads += 1
        return self.records[index]


def walks_with_and_without_memo(locator: Locator) -> list[tuple[list[int], list[int], list[int], int, int]]:
    """For a walk that memoises and one that forgets the IPv4 walk's memo: the IPv6 blocks
    (starts, lengths, joint classes), the records read by the IPv4 and by the IPv6 walk."""
    walks = []
    for forget in (False, True):
        compiler = steermap_module._Compiler(locator, [nearest])
        compiler.records = CountingRecords(compiler.records)  # type: ignore[assignment]
        CountingRecords.reads = 0
        compiler.walk(4)
        ipv4_reads = CountingRecords.reads
        if forget:
            compiler.memo.clear()
        walks.append((*compiler.walk(6), ipv4_reads, CountingRecords.reads - ipv4_reads))
    return walks


def test_aliased_ipv4_subtree_is_not_walked_again(mmdb: WriteMmdb) -> None:
    # A dense IPv4 region of one class: 256 /16s of 10/8 with distinct records.
    networks: list[tuple[str, dict[str, object]]] = [
        (f"10.{i}.0.0/16", {"location": {"latitude": 52.0, "longitude": 5.0}, "postal": {"code": str(i)}})
        for i in range(256)
    ]
    networks.append(("11.0.0.0/8", {"location": {"latitude": 1.0, "longitude": 104.0}}))
    with Locator(aliased_database(mmdb, networks, "2002::/16")) as locator:
        assert locator.locate(ip_address("2002:a01:203::1")).latitude == 52.0  # 6to4 for 10.1.2.3
        (*remembered, ipv4_reads, remembered_reads), (*forgotten, _, forgotten_reads) = (
            walks_with_and_without_memo(locator)
        )
        assert remembered == forgotten
        # Without the memo the IPv6 walk reads the IPv4 tree again; with it, the paths to ::/64
        # and 2002::/16 and the top of the IPv4 tree, with 10/8 from the memo.
        assert ipv4_reads > 500
        assert forgotten_reads - remembered_reads > 0.8 * ipv4_reads
        assert remembered_reads < 300
        (steer_map,) = compile_maps(locator, [nearest])
        assert steer_map.find(ip_address("2002:a01:203::1")) == (steer_map.classes.index(AMS_FIRST), 24)
        rng = random.Random(1)
        for address in ("2002:a01:203::1", "2002:b00::1", "2002:c00::1", "10.1.2.3"):
            assert_block_holds(steer_map, locator, nearest, ip_address(address), rng)


def test_memo_keeps_the_64_bit_resolution(mmdb: WriteMmdb) -> None:
    # 10/8 is one class down to a /32; reached again at 2001:db8:100::/40, its /32 lies at /72.
    ams: dict[str, object] = {"location": {"latitude": 52.0, "longitude": 5.0}}
    networks: list[tuple[str, dict[str, object]]] = [
        ("10.0.0.0/8", ams),
        ("10.1.2.3/32", {**ams, "postal": {"code": "1"}}),
        ("11.0.0.0/8", {"location": {"latitude": 1.0, "longitude": 104.0}}),
    ]
    with Locator(aliased_database(mmdb, networks, "2001:db8:100::/40")) as locator:
        (*remembered, _, _), (*forgotten, _, _) = walks_with_and_without_memo(locator)
        assert remembered == forgotten
        (steer_map,) = compile_maps(locator, [nearest])
        assert steer_map.find(ip_address("2001:db8:10a:102:300::")) == (MIXED, 64)  # 10.1.2.3
        assert steer_map.find(ip_address("2001:db8:10a:200::")) == (steer_map.classes.index(AMS_FIRST), 55)
        assert steer_map.find(ip_address("10.1.2.3")) == (steer_map.classes.index(AMS_FIRST), 8)


def test_ipv4_only_database(mmdb: WriteMmdb) -> None:
    path = mmdb([("10.0.0.0/8", {"location": {"latitude": 52.0, "longitude": 5.0}})], ip_version=4)
    with Locator(path, [Override(ip_network("2001:db8::/32"), datacenter="sin")]) as locator:
        (steer_map,) = compile_maps(locator, [nearest])
        check_tiling(steer_map)
        assert steer_map.classes[steer_map.find(ip_address("10.1.2.3"))[0]] == AMS_FIRST
        assert steer_map.find(ip_address("::ffff:10.1.2.3"))[1] == 104
        assert steer_map.classes[steer_map.find(ip_address("2001:db8::1"))[0]] == PINNED_SIN
        assert steer_map.classes[steer_map.find(ip_address("2001:db9::1"))[0]] == DEFAULT_ORDER


# --- bytes ---------------------------------------------------------------------------------------


def test_bytes_round_trip(overridden_map: SteerMap) -> None:
    data = overridden_map.to_bytes()
    assert SteerMap.from_bytes(data) == overridden_map


def test_corrupt_bytes_are_refused(overridden_map: SteerMap) -> None:
    data = overridden_map.to_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    for bad in (b"", data[:20], data[:-1], data + b"\0", b"X" + data[1:], bytes(flipped)):
        with pytest.raises(ValueError):
            SteerMap.from_bytes(bad)


@pytest.mark.parametrize(
    ("starts_v4", "info_v4"),
    [
        ([0, 1 << 31], [1, 1 << 8 | 1]),  # class 1 of 1
        ([0, 1 << 30], [1, 1]),  # a gap
        ([0, 1 << 31], [2, 2]),  # the space is not covered
        ([0, 1 << 30, 1 << 31], [2, 1, 1]),  # overlap
        ([0, 1 << 29, 3 << 29, 1 << 31], [3, 2, 3, 1]),  # a misaligned /2
        ([0], [33]),
    ],
    ids=["class", "gap", "short", "overlap", "misaligned", "length"],
)
def test_well_formed_bytes_of_a_bad_map_are_refused(starts_v4: list[int], info_v4: list[int]) -> None:
    bad = SteerMap(
        (("ams",),),
        array.array("I", starts_v4),
        array.array("I", info_v4),
        array.array("Q", [0]),
        array.array("I", [0]),
    )
    with pytest.raises(ValueError):
        SteerMap.from_bytes(bad.to_bytes())


# --- the disk cache --------------------------------------------------------------------------


def test_cache_is_reused_and_keyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    compiled: list[int] = []
    real_compile = steermap_module.compile_maps

    def counting(locator: Locator, classifiers: Sequence[Classifier]) -> list[SteerMap]:
        compiled.append(1)
        return real_compile(locator, classifiers)

    monkeypatch.setattr(steermap_module, "compile_maps", counting)
    cache = tmp_path / "cache"
    copy = tmp_path / "copy.mmdb"
    shutil.copyfile(CITY, copy)
    with Locator(CITY, OVERRIDES) as locator, Locator(copy, OVERRIDES[::-1]) as same, Locator(CITY) as other:
        first = load_or_compile(locator, [nearest], key="k", cache_dir=cache)
        assert len(compiled) == 1 and len(list(cache.iterdir())) == 1
        # Same content at another path, overrides in another order: the cached maps.
        assert load_or_compile(same, [nearest], key="k", cache_dir=cache) == first
        assert len(compiled) == 1
        load_or_compile(locator, [nearest], key="other", cache_dir=cache)
        load_or_compile(other, [nearest], key="k", cache_dir=cache)
        assert len(compiled) == 3 and len(list(cache.iterdir())) == 3
        # A corrupt file: one log line, compiled again and rewritten.
        (path,) = (
            p for p in cache.iterdir() if p.name.endswith(steermap_module.cache_key(locator, "k") + ".bin")
        )
        path.write_bytes(path.read_bytes()[:-10])
        with caplog.at_level(logging.WARNING, logger="gslb.geo.steermap"):
            assert load_or_compile(locator, [nearest], key="k", cache_dir=cache) == first
        assert len(compiled) == 4
        assert [r.message for r in caplog.records if "corrupt" in r.message] != []
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
        assert load_or_compile(locator, [nearest], key="k", cache_dir=cache) == first
        assert len(compiled) == 4
        # A cache file for another number of classifiers is not used for these.
        assert len(load_or_compile(locator, [nearest, everywhere], key="k", cache_dir=cache)) == 2
        assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_old_cache_files_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steermap_module, "CACHE_FILES_KEPT", 2)
    with Locator(LITE_CITY) as locator:
        names = {key: f"steermap-{steermap_module.cache_key(locator, key)}.bin" for key in "abcd"}
        # Written at times 1000, 2000, 3000 (set by hand: file times are coarse).
        for time, key in enumerate("abc", start=1):
            load_or_compile(locator, [everywhere], key=key, cache_dir=tmp_path)
            os.utime(tmp_path / names[key], (time * 1000, time * 1000))
        assert {path.name for path in tmp_path.iterdir()} == {names["b"], names["c"]}
        load_or_compile(locator, [everywhere], key="b", cache_dir=tmp_path)  # used now: kept
        load_or_compile(locator, [everywhere], key="d", cache_dir=tmp_path)
        assert {path.name for path in tmp_path.iterdir()} == {names["b"], names["d"]}


def test_unwritable_cache_still_compiles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with Locator(CITY) as locator, caplog.at_level(logging.WARNING, logger="gslb.geo.steermap"):
        maps = load_or_compile(locator, [nearest], key="k", cache_dir=blocker / "cache")
    assert len(maps) == 1
    assert any("cannot write" in r.message for r in caplog.records)


# --- the embedded GeoLite2 City database ---------------------------------------------------------


@pytest.fixture(scope="module")
def geolite2() -> Iterator[Locator]:
    with Locator(None) as locator:
        yield locator


@pytest.fixture(scope="module")
def geolite2_map(geolite2: Locator) -> SteerMap:
    (steer_map,) = compile_maps(geolite2, [nearest])
    return steer_map


def test_geolite2_city_sample(geolite2_map: SteerMap, geolite2: Locator) -> None:
    rng = random.Random(2018)
    steer_map = geolite2_map
    addresses: list[IPAddress] = [IPv4Address(rng.getrandbits(32)) for _ in range(500)]
    for _ in range(700):
        index = rng.randrange(len(steer_map.starts_v4))
        start, length = steer_map.starts_v4[index], steer_map.info_v4[index] & 0xFF
        addresses.append(IPv4Address(rng.randrange(start, start + (1 << (32 - length)))))
    for _ in range(800):
        index = rng.randrange(len(steer_map.starts_v6))
        start, length = steer_map.starts_v6[index], steer_map.info_v6[index] & 0xFF
        addresses.append(
            IPv6Address(rng.randrange(start, start + (1 << (64 - length))) << 64 | rng.getrandbits(64))
        )
    for address in addresses:
        assert_block_holds(steer_map, geolite2, nearest, address, rng)
    assert SteerMap.from_bytes(steer_map.to_bytes()) == steer_map
