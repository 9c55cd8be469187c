"""dns-sidecar beside dnsmasq, same data, same load, on loopback: `python3 bench/run.py [--quick]`.
dns-sidecar runs twice: as one process, and with `--workers N` (default: one per core).

Needs `dnsperf` and `dnsmasq` on PATH (Debian: `apt-get install dnsperf dnsmasq-base`) and, for the
chart, matplotlib (`pip install -e '.[bench]'`); it installs nothing. The servers are run in
turn (alternating, so drift on a shared machine hits them all), and the table gives ratios: absolute
figures move from run to run. Writes `latest.json` and `latest.png` to --out (bench/results)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import fuzz
import probes
from daemons import HOST, Server, free_port, start_dnsmasq, start_sidecar
from dataset import OVERRIDES, WORKLOADS, DataSet
from dnsperf import Run, dnsperf

HERE = Path(__file__).resolve().parent
EVENT_LATENCY = HERE / "event_latency.py"
LATENCY_SHARE = 0.8  # latency is compared at 80% of our own max rate, where both keep up
# Many short rounds rather than a few long ones: on a shared machine the speed drifts within
# seconds, and the median of twenty alternating rounds moves far less than that of five. A single
# round's p99 swings by a factor of three (a stall of a few ms anywhere on the machine lifts it),
# so latency takes the median of five.
FULL = {"seconds": 1.0, "rounds": 20, "latency_seconds": 2.0, "latency_rounds": 5, "records": 100_000,
        "containers": 10_000, "idle_seconds": 5.0, "swap_seconds": 40.0, "junk": 100_000}
QUICK = {"seconds": 2.0, "rounds": 1, "latency_seconds": 1.0, "latency_rounds": 1, "records": 20_000,
         "containers": 1_000, "idle_seconds": 1.0, "swap_seconds": 20.0, "junk": 10_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs and smaller data (well under a minute)")
    parser.add_argument("--seconds", type=float, help="length of each dnsperf run at full load")
    parser.add_argument("--rounds", type=int, help="alternating runs per server and workload (median kept)")
    parser.add_argument("--latency-seconds", type=float, help="length of each fixed-rate latency run")
    parser.add_argument("--latency-rounds", type=int, help="alternating latency runs per server (median kept)")
    parser.add_argument("--records", type=int, help="names in the zonefile swapped in under load")
    parser.add_argument("--containers", type=int, help="containers' records held for the memory and event rows")
    parser.add_argument("--idle-seconds", type=float, help="how long idle CPU is measured")
    parser.add_argument("--swap-seconds", type=float, help="longest wait for each zonefile load")
    parser.add_argument("--junk", type=int, help="distinct 4 kB junk datagrams of the memory row")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="workers of the second dns-sidecar (default: cores; below 2: not run)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where latest.json/.png go")
    parser.add_argument("--no-events", action="store_true", help="skip the Docker event-latency row")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib needed)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    cores = len([line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")])
    dnsmasq = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    summary = f"{cpu}, {cores} cores, Linux {platform.release()}, Python {platform.python_version()}, " \
              f"{' '.join(dnsmasq.split()[:3])}"
    return {"cpu": cpu, "cores": cores, "kernel": platform.release(), "python": platform.python_version(),
            "dnsmasq": dnsmasq, "summary": summary}


def compare(servers: dict[str, Server], queries: Path, args: argparse.Namespace) -> dict:
    """Alternate full-load runs (keys "ours", "dnsmasq" and maybe "workers"), then alternate
    latency runs of each at 80% of the single process's median rate. Ratios are to dnsmasq;
    rates and percentiles are medians over the rounds, losses their sum. `{key}_held_qps` is the
    rate a server actually answered in its latency runs: one that cannot keep up is measured at
    less than the rate asked, and its latency says so only in part."""
    rates: dict[str, list[float]] = {key: [] for key in servers}
    costs: dict[str, list[float]] = {key: [] for key in servers}
    order = list(servers.items())
    for round_ in range(args.rounds):
        for key, server in order if round_ % 2 == 0 else order[::-1]:
            cpu = server.cpu_seconds()
            run = dnsperf(server.port, queries, args.seconds)
            rates[key].append(run.qps)
            costs[key].append((server.cpu_seconds() - cpu) * 1e6 / max(1, run.sent - run.lost))
    qps = {key: statistics.median(values) for key, values in rates.items()}
    row: dict = {"latency_rate": round(qps["ours"] * LATENCY_SHARE)}
    for key in servers:
        row[f"{key}_qps"] = round(qps[key])
        row[f"{key}_cpu_us"] = round(statistics.median(costs[key]), 1)
        if key != "dnsmasq":
            prefix = "" if key == "ours" else f"{key}_"
            row[f"{prefix}ratio"] = round(qps[key] / qps["dnsmasq"], 2) if qps["dnsmasq"] else None
    latency: dict[str, list[Run]] = {key: [] for key in servers}
    for round_ in range(args.latency_rounds):
        for key, server in order if round_ % 2 == 0 else order[::-1]:
            latency[key].append(dnsperf(server.port, queries, args.latency_seconds, row["latency_rate"]))
    for key, runs in latency.items():
        for p in (50, 99):
            found = [value for value in (run.percentile(p) for run in runs) if value is not None]
            row[f"{key}_p{p}_ms"] = _ms(statistics.median(found) if found else None)
        row[f"{key}_held_qps"] = round(statistics.median(run.qps for run in runs))
        row[f"{key}_lost"] = sum(run.lost for run in runs)
    return row


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def event_latency(quick: bool, preload: int) -> dict | None:
    """The Docker source's own benchmark, when it is there, with the sidecar already holding
    `preload` other containers' records: it prints one JSON object last."""
    if not EVENT_LATENCY.exists():
        return None
    argv = [sys.executable, str(EVENT_LATENCY), "--json", "--preload", str(preload), *(["--quick"] if quick else [])]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        return {"error": (result.stderr or result.stdout).strip().splitlines()[-1:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    data = DataSet(workdir)
    data.write()
    servers: list[Server] = []
    try:
        upstream = start_dnsmasq("upstream", data.upstream_conf, workdir, "f0.fwd.test.")
        servers.append(upstream)
        theirs = start_dnsmasq("dnsmasq", data.dnsmasq_conf, workdir, OVERRIDES[0],
                               (f"--server={HOST}#{upstream.port}", "--cache-size=10000"))
        servers.append(theirs)
        sidecar_args = [*data.sidecar_args(), "--upstream", f"{HOST}:{upstream.port}"]
        ours = start_sidecar(sidecar_args, workdir, OVERRIDES[0])
        servers.append(ours)
        contenders = {"ours": ours, "dnsmasq": theirs}
        if args.workers > 1:
            contenders["workers"] = start_sidecar([*sidecar_args, "--workers", str(args.workers)], workdir,
                                                  OVERRIDES[0], name="workers")
            servers.append(contenders["workers"])
        workloads = [{"workload": w, **compare(contenders, data.queries(w), args)} for w in WORKLOADS]
        idle = {"ours_pct": probes.idle_cpu(ours, args.idle_seconds),
                "dnsmasq_pct": probes.idle_cpu(theirs, args.idle_seconds), "seconds": args.idle_seconds}
        swap = probes.zone_swap(workdir, args.records, upstream.port, args.swap_seconds)
        junk = fuzz.junk_flood(workdir, upstream.port, args.junk)
    finally:
        for server in reversed(servers):
            server.stop()
    big = workdir / "swap-zones" / "big.test.zone"
    return {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
            "workloads": workloads, "idle_cpu": idle, "zone_swap": swap, "zone_build": probes.zone_build(big),
            "memory": probes.memory(args.containers, free_port()), "junk_flood": junk,
            "event_latency": None if args.no_events else event_latency(args.quick, args.containers)}


def table(results: dict) -> str:
    """The results as one Markdown table (printed, and pasted into docs/speed.md). Where the
    --workers run was made too, a dns-sidecar cell reads "one process / N workers"."""
    rows = results["workloads"]
    ours = ("ours", "workers") if "workers_qps" in rows[0] else ("ours",)
    title = f", 1 / {results['settings']['workers']} workers" if len(ours) > 1 else ""
    lines = [f"| workload | dns-sidecar{title} | dnsmasq | ratio | p50 / p99 ms at q/s held (sidecar{title}) "
             f"| p50 / p99 ms at q/s held (dnsmasq) | CPU µs per query (sidecar{title}; dnsmasq) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        rate = " / ".join(f"{row[key + '_qps']:,}" for key in ours)
        ratio = " / ".join(f"{row['ratio' if key == 'ours' else key + '_ratio']}x" for key in ours)
        latency = " · ".join(_latency(row, key) for key in ours)
        cpu = " / ".join(str(row[key + "_cpu_us"]) for key in ours)
        lines.append(f"| {row['workload']} | {rate} q/s | {row['dnsmasq_qps']:,} q/s | {ratio} | {latency} | "
                     f"{_latency(row, 'dnsmasq')} | {cpu}; {row['dnsmasq_cpu_us']} |")
    swap, build, mem, idle = results["zone_swap"], results["zone_build"], results["memory"], results["idle_cpu"]
    lines.append(f"| zonefile of {swap['records']:,} names: load / swap under {probes.SWAP_RATE} q/s | "
                 f"{_seconds(swap['load_s'], swap)} / {_seconds(swap['swap_s'], swap)} | | | "
                 f"lost {swap['lost']} of {swap['sent']} (after {probes.GIVE_UP:g} s), p99 {swap['p99_ms']} ms, "
                 f"max {swap['max_ms']} ms | parse {build['parse_s']} s + build {build['build_s']} s | |")
    lines.append(f"| {mem['containers']:,} containers ({mem['records']:,} records): resident memory | "
                 f"{mem['rss_mb']} MB | | | {mem['rss_before_mb']} MB empty | | |")
    junk = results["junk_flood"]
    lines.append(f"| {junk['datagrams']:,} distinct {junk['size']:,}-byte junk datagrams: resident memory | "
                 f"+{junk['added_mb']} MB | | | {junk['rss_before_mb']} -> {junk['rss_after_mb']} MB, "
                 f"{junk['tracebacks']} tracebacks | | |")
    lines.append(f"| idle CPU over {idle['seconds']:g} s | {idle['ours_pct']}% | {idle['dnsmasq_pct']}% | | | | |")
    event = results["event_latency"]
    if event is not None:
        lines.append(f"| container `start` event -> name answers | {_event_summary(event)} | | | | | |")
    return "\n".join(lines)


def _latency(row: dict, key: str) -> str:
    """One server's p50 / p99 and the rate it held while they were measured, in thousands."""
    return f"{row[key + '_p50_ms']} / {row[key + '_p99_ms']} at {row[key + '_held_qps'] / 1000:.1f}k"


def _seconds(value: float | None, swap: dict) -> str:
    return f"{value} s" if value is not None else f"over {swap['waited_s']:g} s"


def _event_summary(event: dict) -> str:
    """`bench/event_latency.py --json` reports `event_to_answer_ms` percentiles over `containers`."""
    latency = event.get("event_to_answer_ms")
    if not latency:
        return f"not measured: {event.get('error') or event}"
    return (f"p50 {latency['p50']} ms / p99 {latency['p99']} ms over {event['containers']} containers"
            f" beside {event.get('preloaded', 0):,} other containers ({event.get('failures', 0)} failed)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("dnsperf", "dnsmasq") if shutil.which(tool) is None]
    if missing:
        print(f"bench: needs {' and '.join(missing)} on PATH (Debian: apt-get install dnsperf dnsmasq-base)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dns-sidecar-bench-") as tmp:
        results = measure(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(results["machine"]["summary"])
    print(table(results))
    if not args.no_chart:
        import chart

        print(f"chart: {chart.draw(results, args.out / 'latest.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
