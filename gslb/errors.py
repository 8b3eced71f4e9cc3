"""The one exception tree of gslb. Raise where the problem is found; log once where handled."""

from __future__ import annotations

from collections.abc import Sequence


class GslbError(Exception):
    """Base of every error gslb raises on purpose."""


class ConfigError(GslbError):
    """A configuration (or zone file) is invalid; carries every problem found, with locations."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source} is invalid ({count} {noun}):\n{lines}")


class MalformedQuery(GslbError):
    """A DNS message cannot be understood; the handler answers FORMERR (or drops it)."""


class StateError(GslbError):
    """The state store cannot be read or written."""
