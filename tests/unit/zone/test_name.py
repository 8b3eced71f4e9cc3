"""Names as label sequences: presentation form, keys, and label-boundary tests."""

from __future__ import annotations

import dns.name
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.zone import name as dnsname


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("www.gslb.example.com.", (b"www", b"gslb", b"example", b"com")),
        (r"www\.gslb.example.com.", (b"www.gslb", b"example", b"com")),
        (r"a\\b.example.", (b"a\\b", b"example")),
        (r"\233.example.", (b"\xe9", b"example")),
        (r"\000.example.", (b"\x00", b"example")),
        (".", ()),
    ],
    ids=str,
)
def test_from_text_splits_at_unescaped_dots_only(text: str, labels: tuple[bytes, ...]) -> None:
    assert dnsname.labels(dnsname.from_text(text)) == labels


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a..b.", "empty label"),
        ("a" * 64 + ".", "label of 64 octets"),
        (".".join(["a" * 63] * 4) + ".", "name of 257 octets"),
        ("a\\", "trailing backslash"),
        (r"a\25.", "three digits"),
        (r"a\256.", "three digits up to 255"),
        ("relative", "relative"),
    ],
    ids=str,
)
def test_from_text_rejects(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        dnsname.from_text(text)


def test_relative_names_take_the_origin() -> None:
    origin = dnsname.from_text("example.com.")
    assert dnsname.from_text("www", origin) == dnsname.from_text("www.example.com.")
    assert dnsname.from_text("@", origin) == origin


def test_keys_fold_ascii_only() -> None:
    assert dnsname.key(dnsname.from_text("WwW.Example.COM.")) == dnsname.from_text("www.example.com.")
    assert dnsname.key(b"\x01\xc9\x00") == b"\x01\xc9\x00"  # "É" in latin-1 stays itself (RFC 4343)


@pytest.mark.parametrize(
    ("name", "origin", "within"),
    [
        ("www.gslb.example.com.", "gslb.example.com.", True),
        ("gslb.example.com.", "gslb.example.com.", True),
        ("notgslb.example.com.", "gslb.example.com.", False),
        (r"www\.gslb.example.com.", "gslb.example.com.", False),
        ("www.gslb.example.com.", ".", True),
        ("example.com.", "gslb.example.com.", False),
    ],
    ids=str,
)
def test_is_within_works_at_label_boundaries(name: str, origin: str, within: bool) -> None:
    assert dnsname.is_within(dnsname.from_text(name), dnsname.from_text(origin)) is within


def test_is_within_is_not_fooled_by_a_suffix_inside_a_label() -> None:
    # one label "a\x04gslb" followed by example.com: its bytes end with the wire form of
    # gslb.example.com, but at no label boundary
    name = b"\x06a\x04gslb\x07example\x03com\x00"
    assert not dnsname.is_within(name, dnsname.from_text("gslb.example.com."))


label = st.binary(min_size=1, max_size=63)


@given(st.lists(label, max_size=4))
def test_text_round_trips_against_dnspython(labels: list[bytes]) -> None:
    wire = dnsname.from_labels(labels)
    text = dnsname.to_text(wire)
    assert dnsname.from_text(text) == wire
    assert dns.name.from_text(text).to_wire() == wire
    assert dnsname.parent(wire) == dnsname.from_labels(labels[1:]) if labels else wire
