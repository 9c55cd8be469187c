"""Measurements taken inside a fresh Python process, printed as one JSON line.

`memory N`: a running `Sidecar` (listeners, watcher, caches) holding the records of N containers,
pushed through the Store API the way the Docker source does (one fragment per container, one
resync); reports resident memory before and after. Then every container is stopped and started
again, one event at a time as the Docker source applies them: what each zone change costs
(p50/p99) and the memory after all of them.
`zone-build FILE`: how long parsing a zonefile and `build_zone` take, the work done at swap time
off the event loop."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import statistics
import sys
import time
from pathlib import Path

import uvloop
from dnslib import PTR, QTYPE, A

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar.app import Sidecar
from sidecar.config import Config
from sidecar.net.endpoint import Endpoint
from sidecar.sources.files import parse_file
from sidecar.zone.build import build_zone
from sidecar.zone.records import ZoneRecord
from sidecar.zone.store import Store, collector_paused
from sidecar.zone.zone import Fragment

NETWORKS = 50
CONTAINER_TTL = 10


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def container_fragment(i: int) -> Fragment:
    """What one container on one user network contributes: its name and compose name, each for its
    network's clients and for the host view, and a PTR for its network address."""
    net = f"net{i % NETWORKS}"
    inside = f"10.{i % NETWORKS}.{i // 250 % 250}.{i % 250 + 1}"
    outside = f"198.51.100.{i % 250 + 1}"
    origin = f"container c{i}"
    records = []
    for name in (f"c{i}.docker.", f"svc{i}.proj{i // 4}.docker."):
        records.append(ZoneRecord(name, QTYPE.A, CONTAINER_TTL, A(inside), origin, net))
        records.append(ZoneRecord(name, QTYPE.A, CONTAINER_TTL, A(outside), origin, None))
    reverse = ipaddress.ip_address(inside).reverse_pointer + "."
    records.append(ZoneRecord(reverse, QTYPE.PTR, CONTAINER_TTL, PTR(f"c{i}.docker."), origin, None))
    return Fragment(tuple(records), {net: (ipaddress.ip_network(f"10.{i % NETWORKS}.0.0/16"),)}, yields=True)


async def memory(containers: int, upstream_port: int) -> dict:
    config = Config(listen=(Endpoint("127.0.0.1", 0),), docker=False,
                    upstreams=(Endpoint("127.0.0.1", upstream_port),))
    sidecar = Sidecar(config)
    await sidecar.start()
    try:
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        sidecar.store.put_many({f"docker:c{i}": container_fragment(i) for i in range(containers)},
                               replace_prefix="docker:")
        build_s = time.perf_counter() - started
        gc.collect()
        loaded = rss_mb()
        changes = restart_each(sidecar.store, containers)
        gc.collect()
        return {"containers": containers, "records": len(sidecar.store.zone.records),
                "rss_before_mb": round(before, 1), "rss_mb": round(loaded, 1), "build_s": round(build_s, 3),
                "event_ms": percentiles_ms(changes), "rss_after_events_mb": round(rss_mb(), 1)}
    finally:
        await sidecar.stop()


def restart_each(store: Store, containers: int) -> list[float]:
    """Stop and start every container in turn (two zone changes each); the seconds each took."""
    took = []
    for i in range(containers):
        key, fragment = f"docker:c{i}", container_fragment(i)
        started = time.perf_counter()
        store.remove(key)
        stopped = time.perf_counter()
        store.put_many({key: fragment})
        took += [stopped - started, time.perf_counter() - stopped]
    return took


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50": round(statistics.median(ordered) * 1000, 3),
            "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000, 3)}


def zone_build(path: Path) -> dict:
    """Parse and build as the zonefile watcher does: with the garbage collector paused."""
    with collector_paused():
        started = time.perf_counter()
        records = parse_file(path, "zone").records
        parsed = time.perf_counter()
        zone, _ = build_zone({"file": Fragment(tuple(records))})
        built = time.perf_counter()
    return {"records": len(zone.records), "parse_s": round(parsed - started, 3),
            "build_s": round(built - parsed, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="probe", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("containers", type=int)
    mem.add_argument("--upstream-port", type=int, required=True, help="a loopback port (never asked)")
    build = sub.add_parser("zone-build")
    build.add_argument("zonefile", type=Path)
    args = parser.parse_args()
    if args.probe == "memory":
        result = uvloop.run(memory(args.containers, args.upstream_port))
    else:
        result = zone_build(args.zonefile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
