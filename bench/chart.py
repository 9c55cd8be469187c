"""The PNG beside the JSON: queries/s, p50/p99 latency and CPU per query for each workload, every
server side by side (dns-sidecar as one process and with --workers, dnsmasq)."""

from __future__ import annotations

from pathlib import Path

SERVERS = (("ours", "dns-sidecar", "tab:blue"), ("workers", "dns-sidecar --workers {workers}", "tab:cyan"),
           ("dnsmasq", "dnsmasq", "tab:gray"))


def draw(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["workloads"]
    names = [row["workload"] for row in rows]
    xs = range(len(rows))
    fig, (qps, lat, cpu) = plt.subplots(1, 3, figsize=(15, 4))
    servers = [(key, label.format(**results["settings"]), color) for key, label, color in SERVERS
               if f"{key}_qps" in rows[0]]
    width = 0.8 / len(servers)
    for i, (key, label, color) in enumerate(servers):
        offset = [x + (i - (len(servers) - 1) / 2) * width for x in xs]
        qps.bar(offset, [row[f"{key}_qps"] / 1000 for row in rows], width, label=label, color=color)
        lat.bar(offset, [row[f"{key}_p99_ms"] or 0 for row in rows], width, label=f"{label} p99", color=color,
                alpha=0.45)
        lat.bar(offset, [row[f"{key}_p50_ms"] or 0 for row in rows], width, label=f"{label} p50", color=color)
        cpu.bar(offset, [row[f"{key}_cpu_us"] for row in rows], width, label=label, color=color)
    qps.set_title("queries/s (thousands), dnsperf -c 4")
    lat.set_title("latency (ms, log) at 80% of dns-sidecar's max rate")
    lat.set_yscale("log")
    cpu.set_title("server CPU per query (µs, log)")
    cpu.set_yscale("log")
    for axis in (qps, lat, cpu):
        axis.set_xticks(list(xs), names)
        axis.legend(fontsize=8)
    fig.suptitle(results["machine"]["summary"], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
