"""The benchmark's quick mode runs end to end and writes its table, JSON and chart. Only the shape is
checked: speed figures from a shared CI machine are noise, so no threshold is asserted here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

TINY = ["--quick", "--workers", "2", "--seconds", "0.5", "--latency-seconds", "0.5", "--records", "2000",
        "--containers", "100", "--idle-seconds", "0.2", "--swap-seconds", "20", "--junk", "2000", "--no-events"]


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("dnsperf") and shutil.which("dnsmasq")), reason="needs dnsperf and dnsmasq")
def test_quick_benchmark_writes_table_json_and_chart(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), *TINY, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert [row["workload"] for row in results["workloads"]] == ["local", "forward-cached", "forward-uncacheable"]
    assert results["settings"]["workers"] == 2
    for row in results["workloads"]:
        assert row["ours_qps"] > 0 and row["workers_qps"] > 0 and row["dnsmasq_qps"] > 0
        assert row["ratio"] == pytest.approx(row["ours_qps"] / row["dnsmasq_qps"], abs=0.01)
        assert row["workers_ratio"] == pytest.approx(row["workers_qps"] / row["dnsmasq_qps"], abs=0.01)
        for server in ("ours", "workers", "dnsmasq"):
            for key in ("p50_ms", "p99_ms", "cpu_us"):
                assert row[f"{server}_{key}"] is not None and row[f"{server}_{key}"] >= 0
            assert 0 < row[f"{server}_held_qps"] <= row["latency_rate"] * 1.1  # dnsperf -Q caps what is sent
    swap = results["zone_swap"]
    assert swap["records"] == 2000 and swap["load_s"] is not None and swap["swap_s"] is not None
    assert swap["sent"] > 0 and swap["lost"] >= 0
    assert results["zone_build"]["records"] >= 2000
    assert results["memory"]["containers"] == 100 and results["memory"]["records"] == 500
    assert results["memory"]["rss_mb"] > results["memory"]["rss_before_mb"] > 0
    assert set(results["idle_cpu"]) == {"ours_pct", "dnsmasq_pct", "seconds"}
    junk = results["junk_flood"]
    assert junk["datagrams"] == 2000 and junk["rss_after_mb"] > 0 and junk["tracebacks"] == 0

    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| workload | dns-sidecar, 1 / 2 workers | dnsmasq | ratio")
    assert [line.split("|")[1].strip() for line in table[2:5]] == ["local", "forward-cached", "forward-uncacheable"]
    assert all(line.count("k ·") == 1 and line.split("|")[6].strip().endswith("k") for line in table[2:5])
    assert any("resident memory" in line for line in table)
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(not shutil.which("dnsmasq"), reason="needs dnsmasq")
def test_the_seeded_fuzz_run_reports_a_clean_server():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--packets", "3000", "--seed", "3"],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sent"] == 3000 and report["probes"] == 6 and report["seed"] == 3
    assert report["alive"] and report["still_answers"] and report["tracebacks"] == 0 and report["errors"] == 0
