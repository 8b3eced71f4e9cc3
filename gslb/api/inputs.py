"""What the api accepts as text, and JSON text that can always be sent and stored.

Pure: standard library only (no aiohttp), so the rules are unit-tested on their own. Every
string a request brings (drain reasons, names and ids in paths, query parameters, the token)
passes `check_text` before it is used, logged, stored or quoted in a reply: a lone surrogate
(`"a\\ud800b"` is valid JSON) cannot be encoded as UTF-8, so once stored it broke every
reply, the audit and the snapshot that held it; control characters forge log lines and
status-page rows. Both are refused with 400 and a message naming the field, as are strings
longer than the field allows. `json_text` is the second line of defence for replies: text
that still cannot be encoded comes out with every non-ASCII character escaped.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Invisible characters that reorder the text around them ("Trojan Source"): not in reasons."""


class RequestProblem(Exception):
    """A request the api refuses; `code` is the machine-readable error, `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def text_problem(value: str, *, max_length: int) -> str | None:
    """Why `value` is not acceptable text (None: it is): too long, a lone surrogate, a
    control character, a line separator or a bidi control."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters ({len(value)})"
    if value.isprintable():
        return None  # the common case: no control characters, no surrogates
    for index, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if category == "Cs":
            return f"contains a lone surrogate (U+{ord(char):04X}) at character {index}: not Unicode text"
        if category == "Cc":
            return f"contains a control character (U+{ord(char):04X}) at character {index}"
        if category in ("Zl", "Zp"):
            return f"contains a line separator (U+{ord(char):04X}) at character {index}"
        if char in BIDI_CONTROLS:
            return f"contains a bidi control character (U+{ord(char):04X}) at character {index}"
    return None  # not printable only for harmless reasons (U+00A0, a joiner in an emoji): fine


def check_text(value: str, field: str, *, max_length: int, status: int = 400) -> str:
    """`value` when it is acceptable text, else a RequestProblem naming `field`."""
    problem = text_problem(value, max_length=max_length)
    if problem is not None:
        raise RequestProblem(status, "bad_value", f"{field} {problem}", field=field)
    return value


def json_text(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON that encodes as UTF-8: non-ASCII as it is, unless some string cannot be
    encoded (a lone surrogate from before inputs were checked): then escaped, `\\ud800`."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, indent=indent)
    return text
