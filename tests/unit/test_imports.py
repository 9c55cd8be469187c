"""`import sidecar` gives the plug-in API without the server: a plug-in, or a tool that only
reads DNS messages, loads neither the app nor the Docker SDK."""

import subprocess
import sys

from tests.helpers import ROOT


def fresh(code: str) -> subprocess.CompletedProcess:
    """`code` run in a fresh interpreter, where nothing is imported yet."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def printed(code: str) -> str:
    done = fresh(code)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_api_loads_neither_the_app_nor_docker() -> None:
    for module in ("sidecar", "sidecar.dns.wire"):
        loaded = printed(f"import sys, {module}; print(sorted({{'docker', 'sidecar.app'}} & set(sys.modules)))")
        assert loaded == "[]", f"import {module} loaded {loaded}"
    assert printed("from sidecar import Found, Query; print(Query('a.test.', 1).key)") == "a.test."


def test_serve_and_sidecar_are_loaded_when_asked_for() -> None:
    code = "from sidecar import Sidecar, serve; print(Sidecar.__module__, serve.__name__)"
    assert printed(code) == "sidecar.app serve"
    # loading the server's packages leaves the function its name
    code = "import sidecar.app, sidecar.server.udp; from sidecar import serve; print(serve.__doc__.split(':')[0])"
    assert printed(code) == "The Python entry point"
    assert "has no attribute 'nothing'" in fresh("import sidecar; sidecar.nothing").stderr
