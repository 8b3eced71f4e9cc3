"""DNS names as label sequences: wire bytes in, wire bytes out, text only for display.

Pure layer: standard library only. A name is held as its uncompressed wire form
(`b"\\x03www\\x04gslb\\x07example\\x03com\\x00"`): length-prefixed labels ending in the root.
That form is unambiguous (a label may hold any octet, "." and "\\\\" included) and hashable.
A name's *key* is its wire form with ASCII letters folded to lower case (RFC 4343: only
A-Z fold; other octets compare as they are). Folding the whole wire form is safe because
length octets are at most 63 and never fall in A-Z. Zone membership and every suffix test
walk label boundaries (`boundaries`), never a byte `endswith`, which could match inside a
label.
"""

from __future__ import annotations

from collections.abc import Iterator

ROOT = b"\x00"
MAX_LABEL = 63
MAX_NAME = 255

_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_ESCAPE = {ord("."), ord("\\"), ord('"'), ord("("), ord(")"), ord(";"), ord("@"), ord("$")}


def key(wire: bytes) -> bytes:
    """The comparison key: ASCII-only case folding of the whole wire form."""
    return wire.translate(_LOWER)


def boundaries(wire: bytes) -> Iterator[int]:
    """Offsets of every label start, the root's included (the last one yielded)."""
    offset = 0
    while True:
        yield offset
        length = wire[offset]
        if length == 0:
            return
        offset += 1 + length


def parent(wire: bytes) -> bytes:
    """The name without its first label (the root's parent is the root)."""
    return wire[wire[0] + 1 :] if wire[0] else wire


def labels(wire: bytes) -> tuple[bytes, ...]:
    """The labels, root excluded."""
    out = []
    offset = 0
    while wire[offset]:
        length = wire[offset]
        out.append(wire[offset + 1 : offset + 1 + length])
        offset += 1 + length
    return tuple(out)


def from_labels(parts: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"".join(bytes((len(p),)) + p for p in parts) + ROOT


def is_within(name: bytes, origin: bytes) -> bool:
    """`name` equals `origin` or lies below it, compared at label boundaries (both keys)."""
    cut = len(name) - len(origin)
    if cut < 0 or not name.endswith(origin):
        return False
    return any(offset == cut for offset in boundaries(name) if offset <= cut)


def relative_depth(name: bytes, origin: bytes) -> int:
    """How many labels `name` has below `origin` (which must hold it)."""
    return len(labels(name)) - len(labels(origin))


def from_text(text: str, origin: bytes | None = None) -> bytes:
    """Presentation form -> wire form (RFC 1035 section 5.1: `\\.`, `\\\\`, `\\DDD`).

    A name not ending in an unescaped "." is relative and gets `origin` appended ("@" is
    the origin itself). Raises ValueError naming what is wrong (empty label, a label over
    63 octets, a name over 255, a bad escape, a relative name without an origin).
    """
    if text == "@":
        if origin is None:
            raise ValueError('"@" needs an origin')
        return origin
    if text == ".":
        return ROOT
    raw = text.encode("utf-8", "surrogateescape")
    parts: list[bytes] = []
    label = bytearray()
    absolute = False
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == ord("\\"):
            if index + 1 >= len(raw):
                raise ValueError(f"{text!r}: a trailing backslash escapes nothing")
            nxt = raw[index + 1 : index + 4]
            if nxt[:1].isdigit():
                if len(nxt) < 3 or not nxt.isdigit() or int(nxt) > 255:
                    raise ValueError(f"{text!r}: \\DDD needs three digits up to 255")
                label.append(int(nxt))
                index += 4
            else:
                label.append(raw[index + 1])
                index += 2
            continue
        if char == ord("."):
            if not label:
                raise ValueError(f"{text!r}: empty label")
            parts.append(bytes(label))
            label = bytearray()
            index += 1
            if index == len(raw):
                absolute = True
            continue
        label.append(char)
        index += 1
    if label:
        parts.append(bytes(label))
    for part in parts:
        if len(part) > MAX_LABEL:
            raise ValueError(f"{text!r}: label of {len(part)} octets (at most {MAX_LABEL})")
    wire = from_labels(parts)
    if not absolute:
        if origin is None:
            raise ValueError(f"{text!r} is relative and there is no origin")
        wire = wire[:-1] + origin
    if len(wire) > MAX_NAME:
        raise ValueError(f"{text!r}: name of {len(wire)} octets (at most {MAX_NAME})")
    return wire


def to_text(wire: bytes) -> str:
    """Wire form -> presentation form, absolute, with escapes where a label needs them."""
    if wire == ROOT:
        return "."
    out = []
    for part in labels(wire):
        text = []
        for octet in part:
            if octet in _ESCAPE:
                text.append("\\" + chr(octet))
            elif 0x21 <= octet < 0x7F:
                text.append(chr(octet))
            else:
                text.append(f"\\{octet:03d}")
        out.append("".join(text))
    return ".".join(out) + "."
