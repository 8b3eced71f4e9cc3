"""The one exception tree of gslb. Raise where the problem is found; log once where handled."""

from __future__ import annotations

import errno
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


class ListenError(GslbError):
    """A listening socket cannot be opened: which address, why, and what to do about it.

    `address` is `HOST:PORT/PROTO` (`[::1]:53/udp`); `settings` names the flag and the config
    key that choose it (`--listen or server.listen`); `others` says who else may hold it.
    """

    def __init__(self, address: str, reason: str, advice: str) -> None:
        self.address = address
        self.reason = reason
        self.advice = advice
        super().__init__(f"cannot listen on {address}: {reason} ({advice})")

    @classmethod
    def from_os_error(
        cls, address: str, error: OSError, *, settings: str, others: str = "another gslb"
    ) -> ListenError:
        choose = f"choose another address with {settings}"
        if error.errno == errno.EADDRINUSE:
            return cls(address, "address already in use", f"{others}? stop it, or {choose}")
        if error.errno == errno.EACCES:
            return cls(
                address,
                "permission denied",
                "ports below 1024 need root or CAP_NET_BIND_SERVICE "
                f"(systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or {choose}",
            )
        if error.errno == errno.EADDRNOTAVAIL:
            return cls(address, "address not available", f"no interface of this host has it; {choose}")
        reason = (error.strerror or str(error)).lower()
        return cls(address, reason, choose)
