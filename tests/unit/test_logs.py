"""Log lines: the JSON format (one object per line), the format's source, counts, redacted URLs."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gslb.errors import ConfigError
from gslb.logs import JsonFormatter, LogFormat, counted, log_format, rfc3339, without_password


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("gslb.runtime").makeRecord(
        "gslb.runtime", logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    made.created = 1_764_502_483.5129  # 2025-11-30T11:34:43.512Z
    return made


def test_a_record_is_one_json_object_with_time_level_logger_message_and_fields() -> None:
    line = JsonFormatter().format(record("gslb serving %s (%s mode)", "1 zone", "embedded", zones=1))
    assert json.loads(line) == {
        "time": "2025-11-30T11:34:43.512Z",
        "level": "INFO",
        "logger": "gslb.runtime",
        "message": "gslb serving 1 zone (embedded mode)",
        "zones": 1,
    }


def test_a_multi_line_message_and_odd_fields_stay_on_one_line() -> None:
    line = JsonFormatter().format(record("reload failed:\n%s", "  - bad key", where=Path("/etc/gslb.yaml")))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "reload failed:\n  - bad key"
    assert parsed["where"] == "/etc/gslb.yaml"  # what JSON cannot hold becomes its str()


def test_an_extra_field_never_replaces_the_four_core_fields() -> None:
    parsed = json.loads(JsonFormatter().format(record("hello", level="mine", time="mine")))
    assert (parsed["level"], parsed["time"]) == ("INFO", "2025-11-30T11:34:43.512Z")


def test_an_exception_is_one_exc_string() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        made = logging.getLogger("gslb").makeRecord(
            "gslb", logging.ERROR, __file__, 1, "a bug", (), sys.exc_info()
        )
    line = JsonFormatter().format(made)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "a bug"
    assert parsed["exc"].startswith("Traceback (most recent call last):")
    assert parsed["exc"].endswith("ValueError: broken")


def test_the_handler_writes_one_line_per_record() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gslb.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("one")
        logger.warning("two\nlines")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["one", "two\nlines"]


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, {}, LogFormat.PLAIN),
        (None, {"GSLB_LOG_FORMAT": "json"}, LogFormat.JSON),
        (None, {"GSLB_LOG_FORMAT": " JSON "}, LogFormat.JSON),
        (None, {"GSLB_LOG_FORMAT": ""}, LogFormat.PLAIN),
        ("plain", {"GSLB_LOG_FORMAT": "json"}, LogFormat.PLAIN),
        ("json", {}, LogFormat.JSON),
    ],
    ids=["default", "env", "env-case", "empty-env-is-unset", "flag-wins", "flag"],
)
def test_the_format_comes_from_the_flag_then_the_environment(
    flag: str | None, env: dict[str, str], expected: LogFormat
) -> None:
    assert log_format(flag, env) is expected


def test_a_bad_format_in_the_environment_says_which_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        log_format(None, {"GSLB_LOG_FORMAT": "xml"})
    assert str(info.value) == (
        'GSLB_LOG_FORMAT is invalid (1 problem):\n  - "xml" is not a log format (one of: plain, json)'
    )


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 zones"), (1, "1 zone"), (2, "2 zones")],
    ids=["none", "one", "two"],
)
def test_counts_are_singular_only_for_one(count: int, text: str) -> None:
    assert counted(count, "zone") == text


def test_an_irregular_plural() -> None:
    assert counted(3, "entry", "entries") == "3 entries"
    assert counted(1, "entry", "entries") == "1 entry"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("rediss://gslb:s3cret@redis.example:6380", "rediss://gslb:***@redis.example:6380"),
        (
            "redis+sentinel://:pw@h1:26379,h2:26379/mymaster/0?sentinel_password=pw2",
            "redis+sentinel://:***@h1:26379,h2:26379/mymaster/0?sentinel_password=***",
        ),
        ("redis://user@host:6379", "redis://user@host:6379"),
    ],
    ids=["no-password", "password", "user-and-password", "sentinel", "user-only"],
)
def test_a_state_url_in_a_log_line_has_no_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


def test_in_json_an_uncaught_exception_is_one_json_line_too() -> None:
    script = (
        "import logging\n"
        "from gslb.logs import LogFormat, setup_logging\n"
        "setup_logging(LogFormat.JSON, logging.INFO)\n"
        "raise RuntimeError('a bug')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    (line,) = result.stderr.splitlines()
    parsed = json.loads(line)
    assert (result.returncode, parsed["logger"], parsed["level"]) == (1, "gslb", "CRITICAL")
    assert parsed["message"] == "uncaught exception, exiting"
    assert parsed["exc"].endswith("RuntimeError: a bug")
