"""How fast a swarm task becomes (and stops being) a name: `python3 bench/swarm_latency.py [--rounds N] [--json]`.

Starts its own one-node swarm (a dockerd in a private network namespace, as the tests do) and a
dns-sidecar following it with `--view` mapping a loopback source to the overlay network, creates
a `dnsrr` service, then scales it up and down one task at a time, asking the sidecar over
loopback for `tasks.<service>.docker` until the answer has the new count. Per change, from the
moment the engine records the task's new state (its `Status.Timestamp`, same clock) to the
answer: the sidecar's own cost (an event or a poll, the reads, one zone rebuild). The goal is
under a second.

Prints one line; `--json` prints a JSON object as the last line. Needs root, dockerd, the docker
CLI, busybox and iproute2; installs nothing."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the repository root: tests.helpers' engines

from daemons import HOST, ROOT, answer_count, ask, free_port  # noqa: E402
from docker.types import EndpointSpec  # noqa: E402
from event_latency import percentiles  # noqa: E402

from tests.helpers.dockerd import IMAGE  # noqa: E402
from tests.helpers.swarm import SwarmDockerd, one_node_swarm  # noqa: E402

SERVICE, NETWORK, SUBNET = "bench", "bench_net", "10.214.0.0/24"
INSIDE = "127.0.0.214"
ANSWER_TIMEOUT = 10.0


def start_sidecar(engine: SwarmDockerd, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    resolv = workdir / "resolv.conf"
    resolv.write_text("")
    argv = [sys.executable, "-m", "sidecar", "serve", "--listen", f"{HOST}:{port}", "--resolv-conf", str(resolv),
            "--view", f"{NETWORK}={INSIDE}/32", "--log-level", "info"]
    with (workdir / "sidecar.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "DOCKER_HOST": engine.url}, start_new_session=True)
    return proc, port


def timestamp_ns(text: str) -> int:
    """The engine's RFC 3339 time with nanoseconds, as wall-clock nanoseconds."""
    head, _, tail = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return int(seconds) * 10**9 + int((tail + "000000000")[:9])


def wait_tasks(client, count: int) -> list[dict]:
    """The service's tasks once exactly `count` of them are running and no other is."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = client.api.tasks(filters={"service": SERVICE})
        running = [t for t in found if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]
        leaving = [t for t in found if t["Status"]["State"] == "running" and t["DesiredState"] != "running"]
        if len(running) == count and not leaving:
            return found
        time.sleep(0.01)
    raise RuntimeError(f"the service did not settle at {count} tasks")


def answered(port: int, count: int) -> int:
    """Wall-clock ns when the sidecar first answers `count` task addresses (0 on timeout)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    name = f"tasks.{SERVICE}.docker"
    while time.monotonic() < deadline:
        if answer_count(ask(port, name, timeout=0.2, source=INSIDE)) == count:
            return time.time_ns()
        time.sleep(0.005)
    return 0


def measure(engine: SwarmDockerd, port: int, rounds: int) -> dict:
    client = engine.client()
    client.networks.create(NETWORK, driver="overlay", attachable=True,
                           ipam={"Config": [{"Subnet": SUBNET}]})
    service = client.services.create(IMAGE, ["sleep", "600"], name=SERVICE, networks=[NETWORK], stop_signal="SIGKILL",
                                     endpoint_spec=EndpointSpec(mode="dnsrr"))
    up: list[float] = []
    down: list[float] = []
    failures = 0
    try:
        wait_tasks(client, 1)
        if not answered(port, 1):
            raise RuntimeError("the sidecar never named the first task")
        for count in [n for _ in range(rounds) for n in (2, 1)]:
            service.scale(count)
            tasks = wait_tasks(client, count)
            when = answered(port, count)
            if not when:
                failures += 1
                continue
            key = "running" if count == 2 else "shutdown"
            changed = max(timestamp_ns(t["Status"]["Timestamp"]) for t in tasks
                          if t["Status"]["State"] == key or (key == "shutdown" and t["DesiredState"] != "running"))
            (up if count == 2 else down).append(max(0, when - changed) / 1e6)
            service.reload()
    finally:
        client.close()
    return {"rounds": rounds, "failures": failures, "task_running_to_answer_ms": percentiles(up),
            "task_gone_to_answer_ms": percentiles(down)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="scale up and down this many times (default 10)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="dns-sidecar-swarm-latency-"))
    sidecar = None
    with one_node_swarm() as engine:
        try:
            sidecar, port = start_sidecar(engine, workdir)
            result = measure(engine, port, args.rounds)
        finally:
            if sidecar is not None:
                sidecar.terminate()
                sidecar.wait(10)
            shutil.rmtree(workdir, ignore_errors=True)
    up, down = result["task_running_to_answer_ms"], result["task_gone_to_answer_ms"]
    print(f"swarm latency over {args.rounds} rounds: task running -> answered p50 {up['p50']} ms, "
          f"max {up['max']} ms; task gone -> withdrawn p50 {down['p50']} ms, max {down['max']} ms; "
          f"failures {result['failures']}")
    if args.json:
        print(json.dumps(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
