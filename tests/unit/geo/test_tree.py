"""SearchTree: the MMDB search tree read directly, checked against maxminddb's own lookups."""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import maxminddb
import pytest

from gslb.geo.tree import SearchTree

DATA = Path(__file__).resolve().parents[2] / "data" / "geoip"


@contextmanager
def opened(path: Path) -> Iterator[tuple[SearchTree, maxminddb.Reader]]:
    with path.open("rb") as file:
        buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    reader = maxminddb.open_database(str(path))
    meta = reader.metadata()
    try:
        yield (
            SearchTree(
                buffer, node_count=meta.node_count, record_size=meta.record_size, ip_version=meta.ip_version
            ),
            reader,
        )
    finally:
        reader.close()
        buffer.close()


def tree_prefix_length(tree: SearchTree, address: IPv4Address | IPv6Address) -> tuple[bool, int]:
    """(found data, prefix length) by walking the tree, as maxminddb reports them."""
    bits = address.max_prefixlen
    root = tree.ipv4_root if address.version == 4 else tree.ipv6_root
    record, depth = tree.descend(root, int(address), bits, bits)
    return record > tree.node_count, depth


ADDRESSES = [
    "81.2.69.142",
    "81.2.69.141",
    "1.1.1.1",
    "127.0.0.1",
    "214.1.1.1",
    "175.16.199.1",
    "255.255.255.255",
    "0.0.0.0",
    "2001:218::1",
    "2001:220::1",
    "2a02:cf40::1",
    "::1",
    "::ffff:81.2.69.142",
    "2002:5102:458e::1",
    "ffff::1",
]


@pytest.mark.parametrize("name", ["GeoIP2-City-Test", "GeoLite2-City-Test", "GeoIP2-Country-Test"])
def test_tree_agrees_with_maxminddb(name: str) -> None:
    with opened(DATA / f"{name}.mmdb") as (tree, reader):
        for text in ADDRESSES:
            address = ip_address(text)
            record, length = reader.get_with_prefix_len(address)
            assert tree_prefix_length(tree, address) == (record is not None, length), text


@pytest.mark.parametrize("record_size", [24, 28, 32])
@pytest.mark.parametrize("ip_version", [4, 6])
def test_record_sizes(mmdb: Callable[..., Path], record_size: int, ip_version: int) -> None:
    networks = [("10.0.0.0/8", {"a": 1}), ("10.1.0.0/16", {"b": 2}), ("192.0.2.128/25", {"c": 3})]
    if ip_version == 6:
        networks.append(("2001:db8::/32", {"d": 4}))
    with opened(mmdb(networks, ip_version=ip_version, record_size=record_size)) as (tree, reader):
        assert tree.ip_version == ip_version
        for text in ["10.1.2.3", "10.2.3.4", "192.0.2.200", "192.0.2.1", "8.8.8.8"]:
            address = ip_address(text)
            record, length = reader.get_with_prefix_len(address)
            assert tree_prefix_length(tree, address) == (record is not None, length), text


def test_ipv4_tree_has_no_ipv6(mmdb: Callable[..., Path]) -> None:
    with opened(mmdb([("10.0.0.0/8", {"a": 1})], ip_version=4)) as (tree, _reader):
        assert tree.ipv4_root == 0
        assert tree.ipv6_root == tree.node_count  # "no data"


def test_bad_trees() -> None:
    buffer = mmap.mmap(-1, 64)
    try:
        with pytest.raises(ValueError, match="record size"):
            SearchTree(buffer, node_count=1, record_size=20, ip_version=6)
        with pytest.raises(ValueError, match="ip_version"):
            SearchTree(buffer, node_count=1, record_size=24, ip_version=5)
        with pytest.raises(ValueError, match="does not fit"):
            SearchTree(buffer, node_count=10, record_size=32, ip_version=6)
        buffer[6] = 1
        with pytest.raises(ValueError, match="separator"):
            SearchTree(buffer, node_count=1, record_size=24, ip_version=4)
    finally:
        buffer.close()
