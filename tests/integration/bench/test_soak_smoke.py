"""The soak, shortened to half a minute: load at half the measured rate while containers stop and
start and the zonefile is rewritten every second. Speed on a shared CI machine is noise, so no
rate is asserted; what must hold is that answers flowed, nearly nothing was lost, the sidecar
ended answering the last zonefile and the containers' real state, and memory stayed put."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SECONDS = 30


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.skipif(not all(map(shutil.which, ("dnsperf", "dnsmasq", "dockerd", "busybox"))),
                    reason="needs dnsperf, dnsmasq, dockerd and busybox")
def test_soak_for_half_a_minute(tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", str(SECONDS),
                             "--measure-seconds", "2", "--sample-seconds", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=SECONDS + 150, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    soak = json.loads(out.read_text())
    assert soak == json.loads(result.stdout.splitlines()[-1]) | {"rss_mb": soak["rss_mb"]}

    queries = soak["queries"]
    assert queries["sent"] == queries["answered"] + queries["lost"]
    assert queries["answered"] > 0 and soak["achieved_qps"] > 0 and soak["target_qps"] > 0
    assert queries["lost_pct"] < 5
    assert soak["final"] == {"zone_current": True, "containers_current": True}
    assert soak["containers_cycled"] >= SECONDS // 3 and soak["container_errors"] == 0
    assert soak["zone_rewrites"] >= SECONDS // 2 and soak["zone_errors"] == 0
    assert soak["tracebacks"] == 0 and not soak["sidecar_exited"]
    rss = soak["rss_mb"]
    assert 0 < rss["start"] <= rss["max"] and rss["end"] <= rss["max"]
    assert rss["max"] < 3 * rss["start"]
    assert len(rss["samples"]) >= SECONDS // 2 - 2
