"""How fast a container becomes a name: `python3 bench/event_latency.py [--containers N] [--preload M] [--json]`.

Starts its own dockerd (as the tests do: own directory and socket, firewall untouched, stopped by
pid) and a dns-sidecar watching it, then starts N containers one at a time and asks the sidecar,
over loopback, for each new name until it answers. Two figures per container:

- from the engine's `start` event (its timestamp, same clock) to the first answer: the sidecar's
  own cost (event delivery, one inspect, one zone rebuild); the goal is under 100 ms;
- from the `docker start` call to the first answer: what a user waiting on the name sees.

With `--preload M`, the sidecar already holds M other containers' records (`bench/preloaded.py`),
so the figures are those of a host with M + N containers.

Prints one line; `--json` prints a JSON object as the last line, `--out FILE` also writes it.
Needs root, dockerd and busybox (Debian: docker.io, busybox-static); installs nothing."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the repository root: tests.helpers' engines

from daemons import HOST, ROOT, answer_count, ask, free_port  # noqa: E402

from tests.helpers.dockerd import IMAGE, Dockerd  # noqa: E402

ANSWER_TIMEOUT = 5.0  # per container: a name that takes longer counts as a failure


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda p: ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]  # noqa: E731
    return {"p50": round(statistics.median(ordered), 2), "p99": round(pick(0.99), 2),
            "max": round(ordered[-1], 2)}


class StartEvents:
    """The engine's `start` event time (ns, wall clock) per container id, from its event stream."""

    def __init__(self, engine: Dockerd) -> None:
        self._client = engine.client()
        self._stream = self._client.api.events(decode=True, filters={"type": ["container"], "event": ["start"]})
        self.seen: dict[str, int] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for event in self._stream:
            self.seen[event["id"]] = int(event["timeNano"])

    def close(self) -> None:
        self._stream.close()
        self._client.close()


def start_sidecar(engine: Dockerd, workdir: Path, preload: int = 0) -> tuple[subprocess.Popen, int]:
    port = free_port()
    resolv = workdir / "resolv.conf"
    resolv.write_text("")  # no upstream: names that are not ours fail at once, nothing leaves loopback
    command = [str(HERE / "preloaded.py"), str(preload)] if preload else ["-m", "sidecar", "serve"]
    argv = [sys.executable, *command, "--listen", f"{HOST}:{port}", "--resolv-conf", str(resolv),
            "--record", "probe.bench.test. 60 IN A 192.0.2.1", "--log-level", "warning"]
    with (workdir / "sidecar.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "DOCKER_HOST": engine.url}, start_new_session=True)
    deadline = time.monotonic() + 30
    while not answer_count(ask(port, "probe.bench.test")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"sidecar did not start: {(workdir / 'sidecar.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, port


def measure(engine: Dockerd, port: int, count: int) -> dict:
    client = engine.client()
    client.networks.create("bench")
    events = StartEvents(engine)
    from_event: list[float] = []
    from_call: list[float] = []
    failures = 0
    try:
        for i in range(count):
            container = client.containers.create(IMAGE, ["sleep", "600"], name=f"c{i}", network="bench",
                                                 stop_signal="SIGKILL")
            called = time.time_ns()
            container.start()
            deadline = time.monotonic() + ANSWER_TIMEOUT
            while not answer_count(ask(port, f"c{i}.docker", timeout=0.05)):
                if time.monotonic() > deadline:
                    failures += 1
                    break
                time.sleep(0.001)  # ask every millisecond, not flat out: the poll must not starve the sidecar
            else:
                answered = time.time_ns()
                from_call.append((answered - called) / 1e6)
                event_deadline = time.monotonic() + ANSWER_TIMEOUT
                while container.id not in events.seen and time.monotonic() < event_deadline:
                    time.sleep(0.001)
                if container.id in events.seen:
                    from_event.append(max(0, answered - events.seen[container.id]) / 1e6)
    finally:
        events.close()
        client.close()
    return {"containers": count, "failures": failures, "event_to_answer_ms": percentiles(from_event),
            "start_call_to_answer_ms": percentiles(from_call)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, help="containers started, one at a time (default 50)")
    parser.add_argument("--preload", type=int, default=0, help="other containers' records the sidecar holds")
    parser.add_argument("--quick", action="store_true", help="10 containers")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    count = args.containers or (10 if args.quick else 50)
    workdir = Path(tempfile.mkdtemp(prefix="dns-sidecar-event-latency-"))
    engine = Dockerd(workdir / "engine")
    engine.root.mkdir()
    sidecar = None
    try:
        engine.start()
        engine.import_busybox()
        sidecar, port = start_sidecar(engine, workdir, args.preload)
        result = {**measure(engine, port, count), "preloaded": args.preload}
    finally:
        if sidecar is not None:
            sidecar.terminate()
            sidecar.wait(10)
        engine.stop()
        engine.unmount()
        shutil.rmtree(workdir, ignore_errors=True)
    ev, call = result["event_to_answer_ms"], result["start_call_to_answer_ms"]
    print(f"event latency over {count} containers beside {args.preload} preloaded: "
          f"start event -> answer p50 {ev['p50']} ms, p99 {ev['p99']} ms; "
          f"docker start call -> answer p50 {call['p50']} ms, p99 {call['p99']} ms; failures {result['failures']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
