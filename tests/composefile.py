"""compose.example.yml for the tests: Debian's `docker-compose` run on it, and a variant with the
sidecar and the client on the host's network, so a test talks to them over loopback only."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import yaml
from conftest import ROOT
from dockerd import Dockerd

EXAMPLE = ROOT / "compose.example.yml"


def compose(*args: str, cwd: Path, env: dict[str, str], log: Path | None = None) -> subprocess.CompletedProcess:
    out = log.open("ab") if log else subprocess.PIPE
    try:
        return subprocess.run(["docker-compose", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=180, check=False)
    finally:
        if log:
            out.close()


def host_network_variant(image: str, engine: Dockerd, host: str, http: str, zones: Path) -> tuple[dict, str]:
    """The example with the sidecar and the client on the host's network (so the test talks to
    them over loopback only), the local images, and a subnet of this run's own."""
    config = yaml.safe_load(EXAMPLE.read_text())
    subnet = f"172.28.{random.randrange(100, 250)}.0/24"
    config["networks"]["stack"]["ipam"]["config"][0]["subnet"] = subnet
    dns = config["services"]["dns"]
    for key in ("build", "ports", "networks"):
        del dns[key]
    dns.update(image=image, network_mode="host")
    dns["volumes"] = [f"{engine.socket}:/var/run/docker.sock:ro", f"{zones}:/zones:ro"]
    dns["environment"].update(DNS_SIDECAR_LISTEN=f"{host}:53", DNS_SIDECAR_HTTP=http,
                              DNS_SIDECAR_UPSTREAM="127.0.0.1:9")  # nothing is forwarded anywhere
    config["services"]["web"].update(image="local/busybox:latest", command=["sleep", "300"])
    client = config["services"]["client"]
    del client["networks"]
    retry = f"for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do nslookup api.dev.test {host} && exit 0; sleep 1; done"
    client.update(image="local/busybox:latest", network_mode="host", dns=[host],
                  command=["sh", "-c", f"{retry}; exit 1"])
    return config, subnet
