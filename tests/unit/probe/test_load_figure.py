"""Reading an http check's load figure from a JSON body field or a response header."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gslb.config.model import Check, CheckKind
from gslb.probe.checks import load_number, read_load

FIELD = Check(kind=CheckKind.HTTP, load_field="load")
DOTTED = Check(kind=CheckKind.HTTP, load_field="stats.cpu.load")
HEADER = Check(kind=CheckKind.HTTP, load_header="X-Load")
NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


@pytest.mark.parametrize(
    ("check", "body", "figure"),
    [
        (FIELD, {"load": 0.42}, 0.42),
        (FIELD, {"load": 17, "other": "x"}, 17.0),
        (FIELD, {"load": "3.5"}, 3.5),
        (FIELD, {"load": -1}, -1.0),
        (DOTTED, {"stats": {"cpu": {"load": 0.9}}}, 0.9),
    ],
    ids=["float", "int", "numeric-string", "negative", "dotted"],
)
def test_a_json_field(check: Check, body: object, figure: float) -> None:
    assert read_load(check, json.dumps(body).encode(), NO_HEADERS) == (figure, "")


@pytest.mark.parametrize(
    ("check", "body", "why"),
    [
        (FIELD, b'{"busy": 1}', "field load missing"),
        (FIELD, b'{"load": "high"}', "field load is not a number: 'high'"),
        (FIELD, b'{"load": true}', "field load is not a number: 'True'"),
        (FIELD, b'{"load": null}', "field load is not a number: 'None'"),
        (FIELD, b'{"load": NaN}', "field load is not a number: 'nan'"),
        (FIELD, b'{"load": 1e999}', "field load is not a number: 'inf'"),
        (FIELD, b'{"load": {"now": 1}}', "field load is not a number"),
        (FIELD, b"[0.5]", "field load missing"),
        (FIELD, b"all good", "body is not JSON"),
        (FIELD, b'{"load": 0.', "body is not JSON"),
        (FIELD, b"\xff\xfe", "body is not JSON"),
        (FIELD, b"", "body is not JSON"),
        (DOTTED, b'{"stats": {"cpu": 3}}', "field stats.cpu.load missing"),
        (DOTTED, b'{"stats": {"mem": {"load": 3}}}', "field stats.cpu.load missing"),
    ],
    ids=[
        "missing",
        "word",
        "bool",
        "null",
        "nan",
        "infinite",
        "object",
        "list-body",
        "text-body",
        "cut-body",
        "bad-utf8",
        "empty-body",
        "dotted-through-number",
        "dotted-missing",
    ],
)
def test_no_figure_from_the_body(check: Check, body: bytes, why: str) -> None:
    figure, note = read_load(check, body, NO_HEADERS)
    assert figure is None
    assert note.startswith(why)


@pytest.mark.parametrize(
    ("values", "figure", "why"),
    [
        ({"X_Load": "0.25"}, 0.25, ""),
        ({"x_load": " 12 "}, 12.0, ""),
        ({"X_LOAD": "7"}, 7.0, ""),
        ({}, None, "header X-Load missing"),
        ({"X_Load": "busy"}, None, "header X-Load is not a number: 'busy'"),
        ({"X_Load": "nan"}, None, "header X-Load is not a number"),
        ({"X_Load": "inf"}, None, "header X-Load is not a number"),
        ({"X_Load": ""}, None, "header X-Load is not a number"),
    ],
    ids=["number", "padded-lower-case", "upper-case", "missing", "word", "nan", "infinite", "empty"],
)
def test_a_header(values: dict[str, str], figure: float | None, why: str) -> None:
    got, note = read_load(HEADER, b'{"load": 99}', headers(**values))
    assert got == figure
    assert note.startswith(why) and bool(note) == bool(why)


def test_the_header_does_not_read_the_body() -> None:
    assert read_load(HEADER, b"not json", headers(X_Load="1.5")) == (1.5, "")


def test_no_source_no_figure() -> None:
    assert read_load(Check(kind=CheckKind.HTTP), b'{"load": 1}', headers(X_Load="1")) == (None, "")


@pytest.mark.parametrize(
    ("value", "figure"),
    [(1, 1.0), (0.5, 0.5), ("2", 2.0), (False, None), (None, None), ([1], None), ("1e400", None)],
    ids=["int", "float", "string", "bool", "none", "list", "overflow"],
)
def test_load_number(value: object, figure: float | None) -> None:
    assert load_number(value) == figure
