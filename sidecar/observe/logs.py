"""Log output: one readable line per event by default, or one JSON object per line
(`--log-format json`) for log shippers; and the optional query log (`--log-queries`).

Events carry their facts as `extra=` fields too, so the JSON form has them as keys while the
text form stays a sentence."""

from __future__ import annotations

import json
import logging
import time

from dnslib import DNSError, DNSRecord

from ..dns.names import rcode_name, type_name

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s worker %(worker)d %(name)s: %(message)s"
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        event.update((k, v) for k, v in vars(record).items() if k not in _STANDARD_ATTRS)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


class _WorkerTag(logging.Filter):
    """Under --workers every line says which worker wrote it (a `worker` key in JSON)."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def configure_logging(level: str, fmt: str = "text", worker: int | None = None) -> None:
    """Log to stderr at `level`; `worker` is this process's index under --workers."""
    handler = logging.StreamHandler()
    text = TEXT_FORMAT if worker is None else WORKER_TEXT_FORMAT
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    if worker is not None:
        handler.addFilter(_WorkerTag(worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class QueryLog:
    """One line per answered query, on logger `sidecar.queries` at info level."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("sidecar.queries")

    def answered(self, client: str, transport: str, name: str, qtype: int, rcode: int, source: str,
                 seconds: float | None) -> None:
        rcode_text, qtype_text = rcode_name(rcode), type_name(qtype)
        took = "" if seconds is None else f", {seconds * 1000:.2f} ms"
        self._log.info("query %s %s from %s over %s: %s (%s%s)", name, qtype_text, client, transport,
                       rcode_text, source, took,
                       extra={"client": client, "transport": transport, "qname": name, "qtype": qtype_text,
                              "rcode": rcode_text, "source": source,
                              "ms": None if seconds is None else round(seconds * 1000, 3)})

    def replayed(self, data: bytes, client: str, transport: str, reply: bytes) -> None:
        """A packet-cache hit: the question is parsed here, only because the log was asked for."""
        try:
            question = DNSRecord.parse(data).q
        except (DNSError, ValueError, IndexError):
            return
        self.answered(client, transport, str(question.qname), question.qtype, reply[3] & 0xF,
                      "packet-cache", None)
