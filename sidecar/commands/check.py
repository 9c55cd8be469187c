"""`dns-sidecar check`: load the same sources `serve` would, print a summary or every error as
`file:line: reason`, and exit 1 on any error. Nothing is served."""

from __future__ import annotations

import logging
import sys

from ..config import Config
from ..sources.files import FileSource
from ..zone.store import Store


def run_check(config: Config) -> int:
    logging.disable(logging.ERROR)  # the errors are printed below, once each, without log decoration
    store = Store()
    store.put("flags", config.flag_fragment())
    files = FileSource(store, config.zonefiles, config.hosts)
    errors = files.load()
    for warning in files.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    zone = store.zone
    print(f"ok: {len(zone.records)} records from {len(config.zonefiles) + len(config.hosts)} file argument(s) "
          f"and {len(config.records)} --record line(s)")
    for origin, soa in sorted(zone.soa_by_origin.items()):
        print(f"  zone {origin} (authoritative, from {soa.origin})")
    return 0
