"""How gslb writes its log: plain lines for people, or one JSON object per line for collectors.

Composition level, standard library only (`json` and `logging.Formatter`: for some thirty lines
a dependency such as python-json-logger is not worth having). The CLI calls `setup_logging`
once, with the format from `--log-format`, else `$GSLB_LOG_FORMAT`, else plain.

A JSON line holds `time` (RFC 3339, UTC, milliseconds), `level` (Python's level name),
`logger`, `message` (the %-formatted text; a multi-line message stays one line, with its
newlines escaped), then every field the call passed with `extra=` (values JSON cannot hold
become their `str()`), and `exc` — the whole traceback as one string — when there is one.
Those four names are never overwritten by an extra field of the same name.

`counted` is here too: every "1 zone" / "3 zones" of a log line or a CLI message.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from gslb.errors import ConfigError

ENV_LOG_FORMAT = "GSLB_LOG_FORMAT"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(enum.Enum):
    PLAIN = "plain"
    JSON = "json"


# Every attribute a LogRecord has of its own: whatever else is on one came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def rfc3339(timestamp: float) -> str:
    """`2026-11-30T11:34:43.512Z`."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def log_format(flag: str | None, env: Mapping[str, str] | None = None) -> LogFormat:
    """`--log-format` when given, else `$GSLB_LOG_FORMAT`, else plain; ConfigError for a bad
    value in the environment (argparse checks the flag)."""
    env = os.environ if env is None else env
    text = flag or env.get(ENV_LOG_FORMAT, "").strip().lower() or LogFormat.PLAIN.value
    try:
        return LogFormat(text)
    except ValueError:
        allowed = ", ".join(f.value for f in LogFormat)
        raise ConfigError(ENV_LOG_FORMAT, [f'"{text}" is not a log format (one of: {allowed})']) from None


def setup_logging(fmt: LogFormat, level: int, stream: TextIO | None = None) -> None:
    """Log `level` and above to `stream` (stderr) in `fmt`. In JSON, an uncaught exception is
    one JSON line too (logger "gslb", level CRITICAL), not a bare traceback."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    if fmt is LogFormat.JSON:
        sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("gslb").critical("uncaught exception, exiting", exc_info=(kind, value, traceback))


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 zone`, `0 zones`, `2 zones` (`plural` for nouns that do not just take an s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def without_password(url: str) -> str:
    """`redis://:secret@host:6379/0` -> `redis://:***@host:6379/0` (and `...password=***` in
    the query): a state URL in a log line must not carry its password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, question, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = re.sub(r"(password=)[^&]*", r"\1***", query)
    return f"{scheme}://{netloc}{slash}{path}{question}{query}"
