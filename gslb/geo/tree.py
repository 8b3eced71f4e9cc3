"""Read-only walk of the search tree of a MaxMind DB file (MMDB format 2.0) over a memory map.

Adapter detail of `gslb.geo`: the maxminddb reader answers one address at a time; widening an
ECS scope needs every network under a prefix, which only the tree knows. This module reads the
tree and nothing else (records are decoded by maxminddb). Standard library only; it must not
import anything outside `gslb.geo`.

Format (https://maxmind.github.io/MaxMind-DB/): `node_count` nodes of two records each, a
record being 24, 28 or 32 bits. A record below `node_count` is a child node, equal to it means
"no data", above it points into the data section that follows the tree and 16 zero bytes. An
IPv6 tree keeps IPv4 at `::/96`, i.e. 96 left turns from the root.
"""

from __future__ import annotations

import mmap

SEPARATOR_SIZE = 16


class SearchTree:
    """The search tree of one MMDB file; node numbers are ints, records are ints."""

    __slots__ = ("_buffer", "_record_size", "ip_version", "ipv4_root", "ipv6_root", "node_count")

    def __init__(self, buffer: mmap.mmap, *, node_count: int, record_size: int, ip_version: int) -> None:
        if record_size not in (24, 28, 32):
            raise ValueError(f"unknown record size {record_size}")
        if ip_version not in (4, 6):
            raise ValueError(f"unknown ip_version {ip_version}")
        tree_size = node_count * record_size // 4
        if node_count <= 0 or tree_size + SEPARATOR_SIZE > len(buffer):
            raise ValueError(f"search tree of {node_count} nodes does not fit in {len(buffer)} bytes")
        if buffer[tree_size : tree_size + SEPARATOR_SIZE] != bytes(SEPARATOR_SIZE):
            raise ValueError("no data section separator after the search tree")
        self._buffer = buffer
        self._record_size = record_size
        self.node_count = node_count
        self.ip_version = ip_version
        if ip_version == 4:
            self.ipv4_root = 0
            self.ipv6_root = node_count  # an IPv4 tree knows no IPv6 address: all "no data"
        else:
            self.ipv6_root = 0
            self.ipv4_root = self.descend(0, 0, 128, 96)[0]

    def children(self, node: int) -> tuple[int, int]:
        """The left (bit 0) and right (bit 1) records of `node` (< node_count)."""
        buffer = self._buffer
        if self._record_size == 24:
            offset = node * 6
            return (
                int.from_bytes(buffer[offset : offset + 3], "big"),
                int.from_bytes(buffer[offset + 3 : offset + 6], "big"),
            )
        if self._record_size == 28:
            offset = node * 7
            middle = buffer[offset + 3]
            return (
                ((middle & 0xF0) << 20) | int.from_bytes(buffer[offset : offset + 3], "big"),
                ((middle & 0x0F) << 24) | int.from_bytes(buffer[offset + 4 : offset + 7], "big"),
            )
        offset = node * 8
        return (
            int.from_bytes(buffer[offset : offset + 4], "big"),
            int.from_bytes(buffer[offset + 4 : offset + 8], "big"),
        )

    def descend(self, root: int, address: int, bits: int, length: int) -> tuple[int, int]:
        """Follow the first `length` bits of `address` (`bits` wide) from `root`.

        Returns `(record, depth)`: the node at depth `length`, or the terminal record (no data
        or data pointer) met first at `depth` <= `length`.
        """
        node = root
        depth = 0
        node_count = self.node_count
        while depth < length and node < node_count:
            node = self.children(node)[(address >> (bits - 1 - depth)) & 1]
            depth += 1
        return node, depth
