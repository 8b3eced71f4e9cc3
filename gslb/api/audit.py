"""The api's audit trail: who did what from where, in the store and in an append-only file.

Adapter layer (file I/O), standard library, `gslb.api.inputs` and `gslb.state.record` only. The store already
records an entry for every drain it adds and removes, from `Drain.who`; the api sets that
to `NAME@SOURCE` (token name and client address), so the store's entry is the audit entry
and nothing is written twice. Requests the api refuses after authentication (409, nothing
to undrain) are appended to the store by the api with `detail` starting with `result=`.
When `api.audit_log` is set every one of them is also appended to that file as one JSON
line (time, token, source, action, target, reason, result, state_version, expiry), opened with
O_APPEND for each write so log rotation by rename just works. A drain or undrain the store
could not take is in the file too (`result` `store_unavailable`): the store cannot hold it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gslb.api.inputs import json_text
from gslb.state.record import AuditEntry

log = logging.getLogger(__name__)

APPLIED = "applied"


def who(token_name: str, source: str) -> str:
    """The `who` of drains and audit entries: token name and client address."""
    return f"{token_name}@{source}"


def split_who(text: str) -> tuple[str, str]:
    """`NAME@SOURCE` -> (NAME, SOURCE); anything else is a name with no source."""
    name, at, source = text.partition("@")
    return (name, source) if at else (text, "")


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    if ts is None:
        return None
    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1000):03d}Z"


def result_of(entry: AuditEntry) -> str:
    """`applied` for the store's own drain entries; the api's `result=` for the others."""
    if entry.detail.startswith("result="):
        return entry.detail.removeprefix("result=").split(";", 1)[0].strip()
    return APPLIED


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    name, source = split_who(entry.who)
    detail = entry.detail
    if detail.startswith("result="):
        detail = detail.partition(";")[2].strip()
    return {
        "at": iso(entry.at),
        "token": name,
        "source": source,
        "action": entry.action.value,
        "target": entry.target,
        "reason": entry.reason,
        "result": result_of(entry),
        "detail": detail,
    }


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of the audit file."""

    at: float
    token: str
    source: str
    action: str
    target: str
    reason: str
    result: str
    version: int | None = None
    expires_at: float | None = None
    detail: str = ""

    def to_json(self) -> str:
        return json_text(
            {
                "at": iso(self.at),
                "ts": round(self.at, 3),
                "token": self.token,
                "source": self.source,
                "action": self.action,
                "target": self.target,
                "reason": self.reason,
                "result": self.result,
                "state_version": self.version,
                "expires_at": iso(self.expires_at),
                "detail": self.detail,
            }
        )


class AuditFile:
    """Appends JSON lines to `path` (None: does nothing). Failures are logged, never raised:
    the drain already happened and is in the store's audit list."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def append(self, record: AuditRecord) -> None:
        if self.path is None:
            return
        line = record.to_json() + "\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, self.path, line)
            except OSError as e:
                log.error("cannot append to the audit log %s: %s", self.path, e)

    @staticmethod
    def _write(path: Path, line: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
