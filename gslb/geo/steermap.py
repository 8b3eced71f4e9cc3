"""The compiled steering map: every client address -> order class, in one bisect (as gdnsd does).

Adapter detail of `gslb.geo`: it walks the MMDB search tree (through `Locator`) once, with the
operator overrides, and cuts each address space into maximal CIDR blocks over which a
classifier (a `Location` -> datacenter order function, given by the caller) answers the same.
A query then costs one `bisect` in a sorted array, and the block's prefix length is the widest
network around the client with that order: the ECS scope. It imports the standard library and
`gslb.geo` only; it must not import the policy, DNS, state or api packages (the classifiers
come in as plain functions).

IPv4 blocks cover the 32-bit space. IPv6 blocks cover the top 64 bits only: a /64 that is not
uniform (the tree or an override goes deeper) is one block of class `MIXED`, for which the
caller asks `Locator.locate` directly; so is `::/64`, which holds `::/96` and the IPv4-mapped
`::ffff:0:0/96` (mapped clients are IPv4 clients and use the IPv4 blocks). Each distinct data
record is decoded once; subtrees reached twice (MaxMind aliases 2002::/16 and 2001::/32 to the
IPv4 tree) are not walked again where they are uniform. Maps are cached on disk, keyed by the
database content, the overrides and the caller's key.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import logging
import os
import struct
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from itertools import islice
from operator import add, eq, mod
from pathlib import Path
from typing import Final

from gslb.atomicfile import write_atomically
from gslb.config.model import Override
from gslb.geo.locator import Location, Locator

__all__ = ["MIXED", "Classifier", "SteerMap", "cache_key", "compile_maps", "load_cached", "load_or_compile"]

log = logging.getLogger(__name__)

Classifier = Callable[[Location], tuple[str, ...]]
"""A client's Location -> its order class (a datacenter order). It must not look at
`Location.network`: the map hands it a representative network of the block."""

MIXED: Final = 0xFFFF
"""Class id of a block that is not uniform at the map's resolution: use `Locator.locate`."""

_MAPPED_START: Final = 0xFFFF << 32  # ::ffff:0:0/96
_FORMAT: Final = b"GSLBSTM1"  # one map
_CONTAINER: Final = b"GSLBSTC1"  # the maps of one cache file
_HEADER: Final = struct.Struct("<8s32sIII")  # magic, sha256 of the rest, classes bytes, v4 and v6 blocks
_WIDTH: Final = {4: 32, 6: 64}
CACHE_FILES_KEPT: Final = 8  # ~8 MB each for GeoLite2 City and one classifier


@dataclass(frozen=True, slots=True)
class SteerMap:
    """Maximal CIDR blocks of one classifier, per family, in address order.

    `starts_*` hold each block's first address (IPv6: its top 64 bits); `info_*` hold
    `(class id << 8) | prefix length`; class ids index `classes`, or are `MIXED`.
    """

    classes: tuple[tuple[str, ...], ...]
    starts_v4: array.array[int]  # 'I'
    info_v4: array.array[int]  # 'I'
    starts_v6: array.array[int]  # 'Q'
    info_v6: array.array[int]  # 'I'

    def __post_init__(self) -> None:
        for name, typecode in (("starts_v4", "I"), ("info_v4", "I"), ("starts_v6", "Q"), ("info_v6", "I")):
            if getattr(self, name).typecode != typecode:
                raise ValueError(f"{name} must be an array of typecode {typecode!r}")
        if not self.starts_v4 or len(self.starts_v4) != len(self.info_v4):
            raise ValueError("starts_v4 and info_v4 must be non-empty and of equal length")
        if not self.starts_v6 or len(self.starts_v6) != len(self.info_v6):
            raise ValueError("starts_v6 and info_v6 must be non-empty and of equal length")
        if len(self.classes) >= MIXED:
            raise ValueError(f"{len(self.classes)} order classes; at most {MIXED - 1} fit")

    def find(self, address: IPv4Address | IPv6Address) -> tuple[int, int]:
        """(class id or MIXED, prefix length of the block holding `address`).

        The prefix length is in the address's own family width: an IPv4-mapped IPv6 address
        uses the IPv4 blocks and gets their prefix length + 96.
        """
        if isinstance(address, IPv4Address):
            info = self.info_v4[bisect_right(self.starts_v4, int(address)) - 1]
            return info >> 8, info & 0xFF
        mapped = address.ipv4_mapped
        if mapped is not None:
            info = self.info_v4[bisect_right(self.starts_v4, int(mapped)) - 1]
            return info >> 8, (info & 0xFF) + 96
        info = self.info_v6[bisect_right(self.starts_v6, int(address) >> 64) - 1]
        return info >> 8, info & 0xFF

    def to_bytes(self) -> bytes:
        """Compact form (arrays little-endian as they are, classes as JSON), for `from_bytes`."""
        classes = json.dumps([list(order) for order in self.classes], separators=(",", ":")).encode()
        body = b"".join(
            (
                classes,
                _little_endian(self.starts_v4),
                _little_endian(self.info_v4),
                _little_endian(self.starts_v6),
                _little_endian(self.info_v6),
            )
        )
        header = _HEADER.pack(
            _FORMAT,
            hashlib.sha256(body).digest(),
            len(classes),
            len(self.starts_v4),
            len(self.starts_v6),
        )
        return header + body

    @classmethod
    def from_bytes(cls, data: bytes, *, check_tiling: bool = True) -> SteerMap:
        """The map `to_bytes` wrote; ValueError when `data` is corrupt or not a map.

        `check_tiling=False` skips the one check that loops in Python (about 0.1 s for City),
        for bytes that a map just made or checked in another process handed over; the
        checksum is still verified.
        """
        if len(data) < _HEADER.size:
            raise ValueError(f"steering map of {len(data)} bytes is shorter than its header")
        magic, digest, classes_size, count_v4, count_v6 = _HEADER.unpack_from(data)
        if magic != _FORMAT:
            raise ValueError(f"not a steering map (magic {magic!r})")
        body = memoryview(data)[_HEADER.size :]
        expected = classes_size + count_v4 * 8 + count_v6 * 12
        if len(body) != expected:
            raise ValueError(f"steering map body is {len(body)} bytes, the header says {expected}")
        if hashlib.sha256(body).digest() != digest:
            raise ValueError("steering map checksum mismatch")
        try:
            decoded = json.loads(bytes(body[:classes_size]))
        except ValueError as exc:
            raise ValueError(f"steering map classes are not JSON ({exc})") from exc
        if not isinstance(decoded, list) or not all(
            isinstance(order, list) and all(isinstance(name, str) for name in order) for order in decoded
        ):
            raise ValueError("steering map classes are not lists of datacenter names")
        offset = classes_size
        arrays: list[array.array[int]] = []
        for typecode, count in (("I", count_v4), ("I", count_v4), ("Q", count_v6), ("I", count_v6)):
            values = array.array(typecode)
            size = count * values.itemsize
            values.frombytes(body[offset : offset + size])
            if sys.byteorder == "big":
                values.byteswap()
            arrays.append(values)
            offset += size
        steer_map = cls(tuple(tuple(order) for order in decoded), *arrays)
        if check_tiling:
            _check_tiling(steer_map.starts_v4, steer_map.info_v4, 32, len(steer_map.classes))
            _check_tiling(steer_map.starts_v6, steer_map.info_v6, 64, len(steer_map.classes))
        return steer_map

    def index_v4(self) -> array.array[int]:
        """index[k] = the IPv4 block holding the address k << 16 (k = 0 .. 65536, the last one
        repeated at the end). A client in /16 k lies in blocks index[k] .. index[k + 1], so a
        bisect over that slice takes a probe or two instead of eighteen."""
        starts = self.starts_v4
        last = len(starts) - 1
        index = array.array("I", bytes(4 * 65537))
        block = 0
        for k in range(65536):
            value = k << 16
            while block < last and starts[block + 1] <= value:
                block += 1
            index[k] = block
        index[65536] = last
        return index


def compile_maps(locator: Locator, classifiers: Sequence[Classifier]) -> list[SteerMap]:
    """One map per classifier, from one walk of the search tree and the overrides.

    Each distinct data record is decoded (and each distinct Location classified) once.
    """
    if not classifiers:
        return []
    began = time.perf_counter()
    compiler = _Compiler(locator, classifiers)
    joint_v4 = compiler.walk(4)
    joint_v6 = compiler.walk(6)
    maps = [compiler.steer_map(index, joint_v4, joint_v6) for index in range(len(classifiers))]
    log.info(
        "steering maps compiled in %.1f s: %d records decoded, %s blocks (IPv4/IPv6)",
        time.perf_counter() - began,
        len(compiler.record_joints),
        ", ".join(f"{len(m.starts_v4)}/{len(m.starts_v6)}" for m in maps),
    )
    return maps


def load_or_compile(
    locator: Locator, classifiers: Sequence[Classifier], *, key: str, cache_dir: Path
) -> list[SteerMap]:
    """The maps of `compile_maps`, from `cache_dir` when compiled before for the same inputs.

    The cache file is named by the SHA-256 of the database's content, the overrides in effect
    and `key`, which must describe everything else the classifiers depend on (datacenters,
    positions, default order). A corrupt or unreadable cache file is ignored (one log line)
    and replaced; a cache that cannot be written only costs the next start a compile. The
    `CACHE_FILES_KEPT` most recently used files are kept, older ones removed.
    """
    maps = load_cached(locator, len(classifiers), key=key, cache_dir=cache_dir)
    if maps is not None:
        return maps
    path = cache_dir / f"steermap-{cache_key(locator, key)}.bin"
    maps = compile_maps(locator, classifiers)
    try:
        write_atomically(path, _maps_to_bytes(maps))
    except OSError as exc:
        log.warning("cannot write steering map cache %s (%s)", path, exc.strerror or exc)
    else:
        _prune_cache(cache_dir)
    return maps


def load_cached(
    locator: Locator, count: int, *, key: str, cache_dir: Path, check_tiling: bool = True
) -> list[SteerMap] | None:
    """The `count` maps cached for `locator` and `key`, or None (missing, unreadable or corrupt:
    one log line for the last two). `check_tiling=False`: see `SteerMap.from_bytes`."""
    path = cache_dir / f"steermap-{cache_key(locator, key)}.bin"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read steering map cache %s (%s); compiling", path, exc.strerror or exc)
        return None
    try:
        maps = _maps_from_bytes(data, check_tiling=check_tiling)
        if len(maps) != count:
            raise ValueError(f"{len(maps)} maps for {count} classifiers")
    except ValueError as exc:
        log.warning("ignoring corrupt steering map cache %s (%s); compiling", path, exc)
        return None
    log.info("steering maps loaded from %s", path)
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: kept by `_prune_cache`
    return maps


def cache_key(locator: Locator, key: str) -> str:
    """SHA-256 (hex) naming the cache file of `locator`'s maps for the caller's `key`."""
    digest = hashlib.sha256()
    digest.update(_FORMAT + _CONTAINER + b"\0")
    digest.update(locator.database_digest().encode() + b"\0")
    for line in sorted(_override_line(override) for override in locator.overrides):
        digest.update(line.encode() + b"\n")
    digest.update(b"\0" + key.encode())
    return digest.hexdigest()


class _Compiler:
    """One walk's state: the tree as an array, the joint classes and the memo of subtrees.

    A *joint class* is the tuple of every classifier's class for one Location; the walk cuts
    the space into maximal joint-uniform blocks, and each map merges them further.
    """

    __slots__ = (
        "classes",
        "classifiers",
        "joint_ids",
        "joints",
        "location_joints",
        "locator",
        "memo",
        "node_count",
        "override_joints",
        "record_joints",
        "records",
    )

    def __init__(self, locator: Locator, classifiers: Sequence[Classifier]) -> None:
        self.locator = locator
        self.classifiers = tuple(classifiers)
        tree = locator.search_tree
        self.records = tree.records()
        self.node_count = tree.node_count
        self.classes: list[dict[tuple[str, ...], int]] = [{} for _ in self.classifiers]
        self.joints: list[tuple[int, ...]] = []
        self.joint_ids: dict[tuple[int, ...], int] = {}
        self.record_joints: dict[int, int] = {}
        self.location_joints: dict[tuple[object, ...], int] = {}
        self.override_joints: dict[tuple[int, int, int], int] = {}
        # Tree node -> (joint class, bits below it when walked) for maximal nodes (the parent
        # is not uniform) whose whole subtree has one joint class and no override: about one
        # entry per block. The aliased subtrees then cost one visit per block.
        self.memo: dict[int, tuple[int, int]] = {}

    def joint(self, location: Location) -> int:
        """The joint class of `location`; each classifier sees each distinct Location once."""
        key = (
            location.source,
            location.latitude,
            location.longitude,
            location.country,
            location.continent,
            location.subdivision,
            location.city,
            location.datacenter,
        )
        joint = self.location_joints.get(key)
        if joint is not None:
            return joint
        ids: list[int] = []
        for classifier, classes in zip(self.classifiers, self.classes, strict=True):
            order = tuple(classifier(location))
            class_id = classes.get(order)
            if class_id is None:
                class_id = classes[order] = len(classes)
                if class_id >= MIXED:
                    raise ValueError(f"more than {MIXED - 1} order classes")
            ids.append(class_id)
        joint = self.joint_ids.get(tuple(ids))
        if joint is None:
            joint = self.joint_ids[tuple(ids)] = len(self.joints)
            self.joints.append(tuple(ids))
        self.location_joints[key] = joint
        return joint

    def record_joint(self, record: int, version: int, start: int, depth: int) -> int:
        network = _network(version, start, depth)
        joint = self.joint(self.locator.record_location(record, network.network_address, network))
        self.record_joints[record] = joint
        return joint

    def override_joint(self, version: int, match: tuple[int, int, Override]) -> int:
        wide_start, length, override = match
        key = (version, wide_start, length)
        joint = self.override_joints.get(key)
        if joint is None:
            shift = 64 if version == 6 else 0
            network = _network(version, wide_start >> shift, min(length, _WIDTH[version]))
            joint = self.joint(self.locator.override_location(override, network))
            self.override_joints[key] = joint
        return joint

    def walk(self, version: int) -> tuple[list[int], list[int], list[int]]:
        """Maximal joint-uniform blocks of one family: (starts, lengths, joint classes).

        Depth-first, left before right, so blocks come out in address order; each new block
        merges with the one before it while the two are sibling halves of the same class.
        """
        v6 = version == 6
        limit = _WIDTH[version]
        shift = 128 - limit if v6 else 0  # IPv6 override prefixes are 128-bit
        table = self.locator.override_table(version)
        records = self.records
        node_count = self.node_count
        memo = self.memo
        record_joints = self.record_joints
        starts: list[int] = [0]  # a sentinel, so that `emit` needs no emptiness test
        lengths: list[int] = [-1]
        joints: list[int] = [0]
        mixed = 0  # MIXED blocks get joint classes -1, -2, ...: /64s that never merge

        def emit(start: int, length: int, joint: int) -> None:
            # Merge with the block before while it is the left sibling (same length) of this
            # one, a right half, and of the same class.
            while lengths[-1] == length and joints[-1] == joint and (start >> (limit - length)) & 1:
                del starts[-1], lengths[-1], joints[-1]
                length -= 1
                start ^= 1 << (limit - length - 1)
            starts.append(start)
            lengths.append(length)
            joints.append(joint)

        root = self.locator.search_root(version)
        # (record, start, depth, check): `check` is 1 while overrides may apply. A negative
        # record is the post-visit of node -1 - record, and `check` is then the index of the
        # node's first block in the output.
        stack = [(root, 0, 0, int(table is not None))]
        while stack:
            record, start, depth, check = stack.pop()
            if record < 0:
                top = lengths[-1]
                if top <= depth and not (starts[-1] ^ start) >> (limit - top):
                    continue  # one block covers the node: its parent decides
                # Not one block: those of its children that are one block are maximal.
                node = -1 - record
                depth += 1
                left, right = records[2 * node], records[2 * node + 1]
                if left < node_count and lengths[check] == depth and joints[check] >= 0:
                    memo[left] = (joints[check], limit - depth)
                if right < node_count and top == depth and joints[-1] >= 0:
                    memo[right] = (joints[-1], limit - depth)
                continue
            cut = False
            if check:
                assert table is not None
                wide = start << shift
                if table.inside(wide, depth):
                    cut = True
                else:
                    match = table.longest_match(wide, depth)
                    if match is not None:
                        emit(start, depth, self.override_joint(version, match))
                        continue
                    check = 0  # no override inside or around this prefix: none below
            if v6 and not start:
                cut = True  # ::/64 holds ::/96 and the mapped ::ffff:0:0/96 (IPv4 clients)
            if not cut:
                if record >= node_count:
                    joint = record_joints.get(record)
                    if joint is None:
                        joint = self.record_joint(record, version, start, depth)
                    emit(start, depth, joint)
                    continue
                hit = memo.get(record)
                if hit is not None and hit[1] <= limit - depth:
                    emit(start, depth, hit[0])
                    continue
            if depth == limit:
                # IPv6: not uniform at /64. IPv4: a node below /32 means a malformed tree.
                if v6:
                    mixed -= 1
                    emit(start, depth, mixed)
                else:
                    emit(start, depth, self.locate_joint(start))
                continue
            depth += 1
            right_start = start | (1 << (limit - depth))
            if record >= node_count:  # cut: an override lies inside this terminal record's prefix
                stack.append((record, right_start, depth, check))
                stack.append((record, start, depth, check))
                continue
            left, right = records[2 * record], records[2 * record + 1]
            if cut:
                stack.append((right, right_start, depth, check))
                stack.append((left, start, depth, check))
                continue
            # From here on no override applies and the children are visited in order; terminal
            # ones are emitted at once, which spares most stack traffic near the leaves.
            if left < node_count:
                stack.append((-1 - record, start, depth - 1, len(starts)))
                stack.append((right, right_start, depth, 0))
                stack.append((left, start, depth, 0))
                continue
            first = len(starts)
            joint = record_joints.get(left)
            if joint is None:
                joint = self.record_joint(left, version, start, depth)
            emit(start, depth, joint)
            if right < node_count:
                stack.append((-1 - record, start, depth - 1, first))
                stack.append((right, right_start, depth, 0))
                continue
            joint = record_joints.get(right)
            if joint is None:
                joint = self.record_joint(right, version, right_start, depth)
            emit(right_start, depth, joint)
        if table is None and root < node_count and len(starts) == 2 and joints[1] >= 0:
            memo[root] = (joints[1], limit)  # a uniform family (one datacenter, say)
        del starts[0], lengths[0], joints[0]
        return starts, lengths, joints

    def locate_joint(self, start: int) -> int:
        return self.joint(self.locator.locate(IPv4Address(start)))

    def steer_map(
        self,
        index: int,
        joint_v4: tuple[list[int], list[int], list[int]],
        joint_v6: tuple[list[int], list[int], list[int]],
    ) -> SteerMap:
        class_of = [key[index] for key in self.joints]
        families = []
        for (starts, lengths, joints), limit, typecode in ((joint_v4, 32, "I"), (joint_v6, 64, "Q")):
            classes = [class_of[j] if j >= 0 else MIXED for j in joints]
            if len(self.classifiers) == 1:  # joint classes are this classifier's: nothing merges
                merged_starts = starts
                merged_info = [(c << 8) | n for c, n in zip(classes, lengths, strict=True)]
            else:
                merged_starts, merged_info = _merge(starts, lengths, classes, limit)
            families.append((array.array(typecode, merged_starts), array.array("I", merged_info)))
        orders = sorted(self.classes[index].items(), key=lambda item: item[1])
        (starts_v4, info_v4), (starts_v6, info_v6) = families
        return SteerMap(tuple(order for order, _ in orders), starts_v4, info_v4, starts_v6, info_v6)


def _merge(
    starts: list[int], lengths: list[int], classes: list[int], limit: int
) -> tuple[list[int], list[int]]:
    """Merge sibling blocks of the same class, bottom-up; returns starts and packed info."""
    out_starts: list[int] = []
    out_lengths: list[int] = []
    out_classes: list[int] = []
    for block_start, block_length, class_id in zip(starts, lengths, classes, strict=True):
        start, length = block_start, block_length
        while (
            length
            and out_lengths
            and out_lengths[-1] == length
            and out_classes[-1] == class_id != MIXED
            and (start >> (limit - length)) & 1
        ):
            out_starts.pop()
            out_lengths.pop()
            out_classes.pop()
            length -= 1
            start &= ~(1 << (limit - length - 1))
        out_starts.append(start)
        out_lengths.append(length)
        out_classes.append(class_id)
    return out_starts, [(c << 8) | n for c, n in zip(out_classes, out_lengths, strict=True)]


def _network(version: int, start: int, depth: int) -> IPv4Network | IPv6Network:
    """The network of a block (`start` in the map's width: IPv6, the top 64 bits)."""
    return IPv4Network((start, depth)) if version == 4 else IPv6Network((start << 64, depth))


def _check_tiling(starts: array.array[int], info: array.array[int], width: int, class_count: int) -> None:
    """ValueError unless the blocks are aligned CIDR blocks that tile the space in order."""
    if starts[0] != 0:
        raise ValueError(f"the first {width}-bit block starts at {starts[0]:#x}, not 0")
    for value in set(info):
        class_id, length = value >> 8, value & 0xFF
        if length > width or (class_id >= class_count and class_id != MIXED):
            raise ValueError(f"bad block info {value:#x} (class {class_id}, /{length})")
    # The low byte of each info item, sliced out of its bytes: one pass less than `& 0xFF`.
    lengths = info.tobytes()[0 if sys.byteorder == "little" else 3 :: 4]
    sizes = [1 << (width - length) for length in range(width + 1)]
    block_sizes = list(map(sizes.__getitem__, lengths))
    if not all(map(eq, map(add, starts, block_sizes), islice(starts, 1, None))):
        raise ValueError(f"the {width}-bit blocks do not tile the address space")
    if starts[-1] + block_sizes[-1] != 1 << width:
        raise ValueError(f"the {width}-bit blocks end before the end of the address space")
    if any(map(mod, starts, block_sizes)):
        raise ValueError(f"a {width}-bit block is not aligned on its prefix length")


def _little_endian(values: array.array[int]) -> bytes:
    if sys.byteorder == "big":
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _maps_to_bytes(maps: Sequence[SteerMap]) -> bytes:
    blobs = [steer_map.to_bytes() for steer_map in maps]
    sizes = struct.pack(f"<{len(blobs)}Q", *map(len, blobs))
    return _CONTAINER + struct.pack("<I", len(blobs)) + sizes + b"".join(blobs)


def _maps_from_bytes(data: bytes, *, check_tiling: bool = True) -> list[SteerMap]:
    if data[: len(_CONTAINER)] != _CONTAINER or len(data) < len(_CONTAINER) + 4:
        raise ValueError("not a steering map cache file")
    (count,) = struct.unpack_from("<I", data, len(_CONTAINER))
    offset = len(_CONTAINER) + 4
    if len(data) < offset + 8 * count:
        raise ValueError("steering map cache file is truncated")
    sizes = struct.unpack_from(f"<{count}Q", data, offset)
    offset += 8 * count
    if offset + sum(sizes) != len(data):
        raise ValueError("steering map cache file sizes do not add up")
    maps = []
    for size in sizes:
        maps.append(SteerMap.from_bytes(data[offset : offset + size], check_tiling=check_tiling))
        offset += size
    return maps


def _prune_cache(cache_dir: Path) -> None:
    """Remove all but the `CACHE_FILES_KEPT` most recently used cache files (best effort)."""
    try:
        found = [(entry.stat().st_mtime_ns, entry) for entry in cache_dir.glob("steermap-*.bin")]
    except OSError:
        return
    found.sort(reverse=True)
    for _, stale in found[CACHE_FILES_KEPT:]:
        with contextlib.suppress(OSError):
            stale.unlink()
            log.info("removed stale steering map cache %s", stale)


def _override_line(override: Override) -> str:
    return f"{override.network} {override.datacenter} {override.latitude!r} {override.longitude!r}"
