"""The exception family. Each carries a message a user can act on; only the server edge maps
them to rcodes, and only the CLI maps them to exit codes."""

from __future__ import annotations


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class ConfigError(SidecarError):
    """A flag or env var is unusable. `flag` names it so the CLI can say which one."""

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(f"{flag}: {reason}")
        self.flag = flag
        self.reason = reason


class ZoneSyntaxError(SidecarError):
    """A zonefile, hosts file or --record line cannot be read; printed as `file:line: reason`."""

    def __init__(self, where: str, line: int, reason: str) -> None:
        super().__init__(f"{where}:{line}: {reason}")
        self.where = where
        self.line = line
        self.reason = reason


class MalformedQuery(SidecarError):
    """A packet is not a query we can answer. `reply_rcode` is None when even the header is
    unreadable (the packet is dropped), else the rcode to answer with (FORMERR, NOTIMP)."""

    def __init__(self, reason: str, reply_rcode: int | None) -> None:
        super().__init__(reason)
        self.reply_rcode = reply_rcode


class UpstreamError(SidecarError):
    """No upstream gave a usable answer; the server edge turns this into SERVFAIL. `repeated` is
    True when nothing was asked (no upstream, or the question failed a moment ago): the reason was
    already logged, and a line per query would let any client flood the log."""

    def __init__(self, reason: str, repeated: bool = False) -> None:
        super().__init__(reason)
        self.repeated = repeated
