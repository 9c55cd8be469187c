"""glibc's own stub resolver (`getent`) resolving through the sidecar: the path every program on
a host takes. Runs in a private network namespace so the sidecar can own 127.0.0.1:53 there."""

import subprocess
import sys

from tests.helpers import ROOT
from tests.helpers.netns import in_ns
from tests.helpers.process import Daemon, start_daemon, wait_for


def test_getent_resolves_local_names_through_the_sidecar(namespace, tmp_path):
    log = tmp_path / "sidecar.log"
    argv = in_ns(namespace, sys.executable, "-m", "sidecar", "--no-docker", "--listen", "127.0.0.1:53",
                 "--zonefile", str(ROOT / "examples"), "--record", "*.romcyber.com. 60 IN A 127.0.0.1",
                 "--upstream", "127.0.0.254")
    server = Daemon(start_daemon(argv, log), log)
    try:
        wait_for(lambda: "listening on" in server.log_text() or server.proc.poll() is not None, what="sidecar")
        assert server.proc.poll() is None, server.log_text()

        def getent(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(in_ns(namespace, "getent", *args), capture_output=True, text=True, timeout=15)

        assert getent("hosts", "web.dev.test").stdout.split() == ["2001:db8::10", "web.dev.test"]
        # ahosts: getaddrinfo(), both families (ahostsv4 would skip A: AI_ADDRCONFIG sees only loopback here)
        assert {line.split()[0] for line in getent("ahosts", "web.dev.test").stdout.splitlines()} == {
            "192.0.2.10", "2001:db8::10"}
        assert getent("hosts", "app.romcyber.com").stdout.split() == ["127.0.0.1", "app.romcyber.com"]
        api = getent("ahosts", "api.dev.test").stdout
        assert "192.0.2.10" in api and "web.dev.test" in api  # through the CNAME, canonical name shown
        missing = getent("hosts", "missing.dev.test")
        assert missing.returncode == 2 and missing.stdout == ""  # NXDOMAIN: "key not found"
    finally:
        server.stop()
