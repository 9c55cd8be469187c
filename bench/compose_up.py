"""Time from the compose walkthrough's `up -d` to a healthy sidecar:
`python3 bench/compose_up.py [--runs N] [--base-tar ROOTFS.tar] [--json] [--out FILE]`.

Starts its own dockerd in a private network namespace (as the tests do: own directory and
socket, firewall untouched, stopped by pid), builds the images with the documented no-registry
recipe (examples/compose/build-offline.sh; `--base-tar` skips its debootstrap), then N times:
docs/compose.md's `docker-compose ... up -d` line on a fresh copy of examples/compose/, until
Docker reports the sidecar healthy, then its `down` line. The image's HEALTHCHECK first runs
5 s after the start, so that is the floor. Prints one Markdown table row; `--json` prints a
JSON object as the last line, `--out FILE` also writes it. Needs root, dockerd, docker-compose,
debootstrap and busybox-static (Debian packages); installs nothing."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the repository root: tests.helpers' engines

from tests.helpers.walkthrough import BUILD_SCRIPT, Stack, engine_in_namespace, walkthrough  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="up/down cycles (default 3)")
    parser.add_argument("--base-tar", type=Path, help="a bookworm root file system tarball for the base image")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    return parser.parse_args(argv)


def engine_versions(env: dict[str, str]) -> str:
    def first_line(*argv: str) -> str:
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stdout.strip()

    return (f"docker {first_line('docker', 'version', '--format', '{{.Server.Version}}')}, "
            f"{first_line('docker-compose', 'version', '--short')} (docker-compose), vfs storage")


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    up, *_, down = walkthrough()
    with engine_in_namespace() as engine:
        build = [str(BUILD_SCRIPT), *(["--base-tar", str(args.base_tar)] if args.base_tar else [])]
        with (workdir / "build.log").open("wb") as log:
            subprocess.run(build, env=engine.env(), stdout=log, stderr=subprocess.STDOUT, check=True)
        client = engine.client()
        seconds = []
        try:
            for run in range(args.runs):
                stack = Stack(engine, workdir / f"run{run}")
                try:
                    seconds.append(round(stack.up_until_healthy(up, client), 2))
                finally:
                    stack.run(down)
        finally:
            client.close()
        return {"up_to_healthy_s": seconds, "median_s": round(statistics.median(seconds), 2),
                "engine": engine_versions(engine.env()), "cores": os.cpu_count(), "command": up}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="compose-up-") as tmp:
        results = measure(args, Path(tmp))
    seconds = results["up_to_healthy_s"]
    print(f"| {results['engine']}, {results['cores']} cores | {len(seconds)} | {results['median_s']:.1f} s "
          f"({min(seconds):.1f}-{max(seconds):.1f}) |")
    if args.json:
        print(json.dumps(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
