"""Fixtures for the geo tests: `mmdb`, a tiny MMDB writer.

The writer builds databases the MaxMind test files do not cover (record sizes 24 and 32, an
IPv4-only tree, an IPv6 tree without IPv4 data, odd records). It writes just enough of the
MaxMind DB 2.0 format for maxminddb (C extension and pure Python) to read it back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

import pytest

_MAP, _STRING, _DOUBLE, _UINT16, _UINT32 = 7, 2, 3, 5, 6
_INT32, _UINT64, _ARRAY, _BOOLEAN = 8, 9, 11, 14

Value = str | float | int | bool | Sequence["Value"] | Mapping[str, "Value"]


def _control(kind: int, size: int) -> bytes:
    first = (kind << 5) if kind <= 7 else 0
    extended = b"" if kind <= 7 else bytes([kind - 7])
    if size < 29:
        return bytes([first | size]) + extended
    if size < 285:
        return bytes([first | 29]) + extended + bytes([size - 29])
    if size < 65821:
        return bytes([first | 30]) + extended + (size - 285).to_bytes(2, "big")
    return bytes([first | 31]) + extended + (size - 65821).to_bytes(3, "big")


def _uint(value: int, kind: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _control(kind, len(payload)) + payload


def encode(value: Value) -> bytes:
    """One value in the MMDB data-section encoding (no pointers)."""
    if isinstance(value, bool):
        return _control(_BOOLEAN, int(value))
    if isinstance(value, str):
        payload = value.encode()
        return _control(_STRING, len(payload)) + payload
    if isinstance(value, float):
        return _control(_DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            return _control(_INT32, 4) + struct.pack(">i", value)
        return _uint(value, _UINT16 if value < 1 << 16 else _UINT32 if value < 1 << 32 else _UINT64)
    if isinstance(value, Mapping):
        return _control(_MAP, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    return _control(_ARRAY, len(value)) + b"".join(encode(v) for v in value)


class _Node:
    __slots__ = ("children",)

    def __init__(self, left: object, right: object) -> None:
        self.children: list[object] = [left, right]


_EMPTY = object()


def write_mmdb(
    path: Path,
    networks: Sequence[tuple[str, Mapping[str, Value]]],
    *,
    ip_version: int = 6,
    record_size: int = 28,
    database_type: str = "Test-City",
    build_epoch: int = 1_700_000_000,
) -> Path:
    """Write an MMDB with `networks` (CIDR -> record); IPv4 networks go under ::/96 in IPv6."""
    bits = 128 if ip_version == 6 else 32
    root = _Node(_EMPTY, _EMPTY)
    data = bytearray()
    offsets: dict[bytes, int] = {}
    prefixes: list[tuple[int, int, int]] = []
    for text, record in networks:
        network: IPv4Network | IPv6Network = ip_network(text)
        if network.version == 6 and ip_version == 4:
            raise ValueError(f"{network} in an IPv4 database")
        shift = 96 if network.version == 4 and ip_version == 6 else 0
        blob = encode(record)
        if blob not in offsets:
            offsets[blob] = len(data)
            data += blob
        prefixes.append((int(network.network_address), network.prefixlen + shift, offsets[blob]))
    # Shorter prefixes first: a longer one later splits the leaf it falls in.
    for value, length, offset in sorted(prefixes, key=lambda p: p[1]):
        node = root
        for depth in range(length):
            bit = (value >> (bits - 1 - depth)) & 1
            if depth == length - 1:
                node.children[bit] = offset
                break
            child = node.children[bit]
            if not isinstance(child, _Node):
                child = _Node(child, child)
                node.children[bit] = child
            node = child
    nodes: list[_Node] = []
    pending = [root]
    while pending:
        node = pending.pop(0)
        nodes.append(node)
        pending.extend(c for c in node.children if isinstance(c, _Node))
    number = {id(n): i for i, n in enumerate(nodes)}
    count = len(nodes)

    def record_value(child: object) -> int:
        if isinstance(child, _Node):
            return number[id(child)]
        if child is _EMPTY:
            return count
        assert isinstance(child, int)
        return count + 16 + child

    tree = bytearray()
    for node in nodes:
        left, right = (record_value(c) for c in node.children)
        if record_size == 24:
            tree += left.to_bytes(3, "big") + right.to_bytes(3, "big")
        elif record_size == 28:
            middle = ((left >> 24) << 4) | (right >> 24)
            tree += (
                (left & 0xFFFFFF).to_bytes(3, "big") + bytes([middle]) + (right & 0xFFFFFF).to_bytes(3, "big")
            )
        else:
            tree += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    metadata = (
        _control(_MAP, 9)
        + encode("binary_format_major_version")
        + _uint(2, _UINT16)
        + encode("binary_format_minor_version")
        + _uint(0, _UINT16)
        + encode("build_epoch")
        + _uint(build_epoch, _UINT64)
        + encode("database_type")
        + encode(database_type)
        + encode("description")
        + encode({"en": "gslb test database"})
        + encode("ip_version")
        + _uint(ip_version, _UINT16)
        + encode("languages")
        + encode(["en"])
        + encode("node_count")
        + _uint(count, _UINT32)
        + encode("record_size")
        + _uint(record_size, _UINT16)
    )
    path.write_bytes(bytes(tree) + bytes(16) + bytes(data) + b"\xab\xcd\xefMaxMind.com" + metadata)
    return path


@pytest.fixture
def mmdb(tmp_path: Path) -> Callable[..., Path]:
    """`mmdb(networks, **options)` writes a database into tmp_path and returns its path."""
    counter = iter(range(1_000_000))

    def write(networks: Sequence[tuple[str, Mapping[str, Value]]], **options: object) -> Path:
        return write_mmdb(tmp_path / f"test-{next(counter)}.mmdb", networks, **options)  # type: ignore[arg-type]

    return write
