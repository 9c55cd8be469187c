"""A bounded soak: `python3 bench/soak.py [--seconds 600]`.

Starts its own dockerd (as the tests do: own directory and socket, firewall untouched, stopped by
pid), an upstream dnsmasq on loopback that never forwards (`--no-resolv`), and a dns-sidecar
serving a zonefile, the Docker source and the upstream. It measures the sidecar's full rate on a
query file that mixes local, container and forwarded names for a few seconds, then drives
`dnsperf` at half that rate (`--rate` to choose) for `--seconds`, while:

- containers are stopped and started in a loop (one action per `--cycle-seconds`),
- the zonefile is rewritten atomically (new addresses) every second,
- the sidecar's resident memory is sampled every `--sample-seconds`.

At the end it checks that the last zonefile and the running containers are what the sidecar
answers, prints a summary and writes JSON (`--out`, default bench/results/soak.json): queries
sent/answered/lost, lost %, RSS at start/end/max, containers cycled, zone rewrites. Every packet
goes to 127.0.0.1; container addresses only appear inside answers. Needs root, dockerd, busybox,
dnsmasq and dnsperf (Debian: docker.io busybox-static dnsmasq-base dnsperf); installs nothing."""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the repository root: tests.helpers' engines

from daemons import ask, start_dnsmasq, start_sidecar  # noqa: E402
from dataset import ZONE, DataSet, address, write_zonefile  # noqa: E402
from dnslib import DNSRecord  # noqa: E402
from dnsperf import dnsperf  # noqa: E402

from tests.helpers.dockerd import IMAGE, Dockerd  # noqa: E402

NETWORK = "soak_net"
STEADY = ("soak-steady-0", "soak-steady-1", "soak-steady-2")  # always running: answered locally
CYCLED = ("soak-cycled-0", "soak-cycled-1", "soak-cycled-2")  # stopped and started in turn
STEADY_WEIGHT = 20  # each steady name appears this many times in the query file, each cycled name once
QUERY_TIMEOUT = 2.0  # dnsperf: a query unanswered after this counts as lost


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak (default 600)")
    parser.add_argument("--rate", type=float, help="queries/s to hold (default: half the measured full rate)")
    parser.add_argument("--measure-seconds", type=float, default=4.0, help="full-rate measurement before the soak")
    parser.add_argument("--cycle-seconds", type=float, default=1.0, help="time between container stop/start actions")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="time between RSS samples")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.json", help="where the JSON goes")
    return parser.parse_args(argv)


class Every:
    """Calls `action()` every `period` seconds on its own thread until `stop()`; counts the calls
    that worked and keeps the last error of those that did not (the soak goes on)."""

    def __init__(self, period: float, action: Callable[[], None]) -> None:
        self.period, self.action = period, action
        self.done, self.failed, self.last_error = 0, 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.action()
                self.done += 1
            except Exception as exc:  # a failed chore is counted, never fatal to the soak
                self.failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat: the engine's own work
    (runc, shims) and every other tenant compete with the sidecar and the load generator."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def a_records(reply: bytes | None) -> list[str]:
    return [] if reply is None else sorted(str(rr.rdata) for rr in DNSRecord.parse(reply).rr if rr.rtype == 1)


def write_queries(data: DataSet, path: Path) -> Path:
    """Local names (zonefile and --record), container names and forwarded names, shuffled (fixed
    seed) so every stretch of the run asks all of them. A cycled container's name is asked rarely:
    while it is stopped the name goes upstream on every query (an NXDOMAIN without SOA cannot be
    cached), which would make the load mostly a measure of the upstream."""
    mixed = [*data.queries("local").read_text().splitlines(), *data.queries("forward-cached").read_text().splitlines(),
             *[f"{name}.docker. A" for name in STEADY] * STEADY_WEIGHT, *[f"{name}.docker. A" for name in CYCLED]]
    random.Random(1).shuffle(mixed)
    path.write_text("\n".join(mixed) + "\n")
    return path


def soak(args: argparse.Namespace, workdir: Path) -> dict:
    data = DataSet(workdir)
    data.write()
    queries = write_queries(data, workdir / "soak.queries")
    engine = Dockerd(workdir / "dockerd")
    engine.root.mkdir()
    started: list = []
    try:
        engine.start()
        engine.import_busybox()
        client = engine.client()
        client.networks.create(NETWORK)
        pool = [client.containers.run(IMAGE, ["sleep", "86400"], name=name, network=NETWORK, detach=True,
                                      stop_signal="SIGKILL") for name in STEADY + CYCLED]
        # NXDOMAIN for container names it is asked (stopped ones), as a real upstream would say
        upstream = start_dnsmasq("upstream", data.upstream_conf, workdir, "f0.fwd.test", ("--local=/docker/",))
        started.append(upstream)
        resolv = workdir / "resolv.conf"
        resolv.write_text("")
        server = start_sidecar([*data.sidecar_args(), "--upstream", f"127.0.0.1:{upstream.port}",
                                "--resolv-conf", str(resolv)], workdir, "h0.bench.test", docker_host=engine.url)
        started.append(server)
        full = dnsperf(server.port, queries, args.measure_seconds, timeout=QUERY_TIMEOUT)
        rate = args.rate or full.qps / 2
        print(f"full rate {full.qps:.0f} q/s; soaking at {rate:.0f} q/s for {args.seconds:g} s", flush=True)

        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()

        def sample() -> None:
            samples.append((round(time.monotonic() - t0, 1), round(server.rss_mb(), 1)))

        sample()
        salt = itertools.count(1)
        state = {"salt": 0}

        def rewrite() -> None:
            state["salt"] = next(salt)
            write_zonefile(data.zonefile, ZONE, data.local_names, salt=state["salt"])

        turn = itertools.count()

        def cycle() -> None:
            container = pool[len(STEADY) + next(turn) % len(CYCLED)]
            container.reload()
            if container.status == "running":
                container.stop(timeout=1)
            else:
                container.start()

        chores = {"rss": Every(args.sample_seconds, sample), "zone": Every(1.0, rewrite),
                  "containers": Every(args.cycle_seconds, cycle)}
        cpu, ticks = server.cpu_seconds(), machine_ticks()
        try:
            run = dnsperf(server.port, queries, args.seconds, rate, timeout=QUERY_TIMEOUT, latencies=False)
        finally:
            for chore in chores.values():
                chore.stop()
        busy, total = (after - before for before, after in zip(ticks, machine_ticks(), strict=True))
        cpu = {"sidecar_cpu_pct": round(100 * (server.cpu_seconds() - cpu) / args.seconds, 1),
               "machine_busy_pct": round(100 * busy / max(1, total), 1)}
        sample()
        final = checks(server, pool, state["salt"])
        client.close()
        return report(args, full.qps, rate, run, samples, chores, final, server) | cpu
    finally:
        for daemon in reversed(started):
            daemon.stop()
        engine.stop()
        engine.unmount()


def checks(server, pool, salt: int) -> dict[str, bool]:
    """After the churn: the sidecar answers the last zonefile, and each container by its state."""
    def zone_current() -> bool:
        return a_records(ask(server.port, "h0.bench.test")) == [address(salt)]

    def containers_current() -> bool:
        for container in pool:
            container.reload()
            running = container.status == "running"
            expected = [container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]] if running else []
            if a_records(ask(server.port, f"{container.name}.docker")) != expected:
                return False
        return True

    return {name: wait(check) for name, check in (("zone_current", zone_current),
                                                 ("containers_current", containers_current))}


def wait(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def report(args, full_qps, rate, run, samples, chores, final, server) -> dict:
    rss = [mb for _, mb in samples]
    answered = run.sent - run.lost
    log = server.log.read_text(errors="replace")
    return {
        "seconds": args.seconds, "full_rate_qps": round(full_qps), "target_qps": round(rate),
        "achieved_qps": round(run.qps), "queries": {"sent": run.sent, "answered": answered, "lost": run.lost,
                                                   "lost_pct": round(100 * run.lost / max(1, run.sent), 4)},
        "rss_mb": {"start": rss[0], "end": rss[-1], "max": max(rss), "samples": samples},
        "containers_cycled": chores["containers"].done, "container_errors": chores["containers"].failed,
        "zone_rewrites": chores["zone"].done, "zone_errors": chores["zone"].failed,
        "last_errors": {k: c.last_error for k, c in chores.items() if c.last_error},
        "final": final, "tracebacks": log.count("Traceback"), "sidecar_exited": server.proc.poll() is not None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="dns-sidecar-soak-"))
    try:
        result = soak(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    q, rss = result["queries"], result["rss_mb"]
    print(f"queries sent {q['sent']}, answered {q['answered']}, lost {q['lost']} ({q['lost_pct']} %) "
          f"at {result['achieved_qps']} q/s (target {result['target_qps']}, full {result['full_rate_qps']})")
    print(f"RSS start {rss['start']} MB, end {rss['end']} MB, max {rss['max']} MB; "
          f"containers cycled {result['containers_cycled']}, zone rewrites {result['zone_rewrites']}; "
          f"final checks {result['final']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb"} | {"rss_mb": {
        k: v for k, v in rss.items() if k != "samples"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
