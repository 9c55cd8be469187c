"""The log lines that say what is wrong with a compose setup and what to do: a Docker socket that
is missing, a directory (what the engine mounts where the host path did not exist), not a
socket, or not ours to open; a zone directory with no zonefile in it. Real sidecar processes,
no engine needed."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.daemons import free_port
from sidecar.sources.dockersocket import socket_problem
from tests.helpers import ROOT
from tests.helpers.process import start_daemon, wait_for

OTHER = 4242  # an owner and group this test's process is not


@pytest.fixture
def resolv_conf(tmp_path) -> Path:
    empty = tmp_path / "resolv.conf"
    empty.write_text("")
    return empty


def engine_warning(sidecar, resolv_conf: Path, url: str) -> str:
    """The one line a sidecar watching `url` logs about it."""
    server = sidecar("--resolv-conf", str(resolv_conf), docker=True, env={"DOCKER_HOST": url})
    wait_for(lambda: "no Docker engine at" in server.log_text(), what="the engine warning")
    return next(line for line in server.log_text().splitlines() if "no Docker engine at" in line)


def test_socket_path_that_does_not_exist(sidecar, resolv_conf, tmp_path) -> None:
    path = tmp_path / "docker.sock"
    line = engine_warning(sidecar, resolv_conf, f"unix://{path}")
    assert f"({path} does not exist: mount the engine's socket there (in compose, the volume marked ADAPT) " \
           "or set DOCKER_HOST)" in line


def test_socket_path_that_is_a_directory(sidecar, resolv_conf, tmp_path) -> None:
    path = tmp_path / "docker.sock"
    path.mkdir()  # what the engine leaves where a mounted host path did not exist
    line = engine_warning(sidecar, resolv_conf, f"unix://{path}")
    assert f"({path} is a directory, not a socket: the host path mounted there did not exist, so the engine " \
           "created an empty directory in its place; mount the engine's socket there" in line


def test_socket_path_that_is_a_regular_file(tmp_path) -> None:
    path = tmp_path / "docker.sock"
    path.touch()
    assert socket_problem(f"unix://{path}") == f"{path} is not a socket: mount the engine's socket there " \
                                               "(in compose, the volume marked ADAPT) or set DOCKER_HOST"


def test_other_endpoints_and_a_usable_socket_leave_the_error_as_it_is(tmp_path) -> None:
    assert socket_problem("tcp://127.0.0.1:2375") is None
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "docker.sock"))
        assert socket_problem(f"unix://{tmp_path}/docker.sock") is None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_socket_this_user_may_not_open(tmp_path, resolv_conf) -> None:
    """A socket like the engine's (0660, another owner and group) and a sidecar that holds no
    capability to override file permissions (as the image's server holds none)."""
    path = tmp_path / "docker.sock"
    log = tmp_path / "sidecar.log"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        os.chown(path, OTHER, OTHER)
        path.chmod(0o660)
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", sys.executable,
                "-m", "sidecar", "serve", "--listen", f"127.0.0.1:{free_port()}", "--resolv-conf", str(resolv_conf)]
        proc = start_daemon(argv, log, {**os.environ, "DOCKER_HOST": f"unix://{path}"})
        try:
            wait_for(lambda: "no Docker engine at" in log.read_text() or proc.poll() is not None,
                     what="the engine warning")
        finally:
            proc.terminate()
            proc.wait(10)
    text = log.read_text()
    expected = (rf"\({re.escape(str(path))}: permission denied: the socket is uid {OTHER}, gid {OTHER}, mode 0660, "
                r"and this process is uid 0 in groups [\d,]+; start the image as root \(it then joins the socket's "
                rf"group and drops root itself\) or add group {OTHER} \(compose: group_add\)\)")
    assert re.search(expected, text), text


def test_empty_zone_directory_is_named_then_a_zonefile_saved_there_is_loaded(sidecar, tmp_path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    server = sidecar("--zonefile", str(zones), "--poll-interval", "0.2")
    assert f"{zones}: the directory is empty: no *.zone file to serve; zonefiles saved there are loaded " \
           "without a restart" in server.log_text()
    (zones / "office.test.zone").write_text("$ORIGIN office.test.\n@ IN SOA ns admin 1 3600 600 86400 60\n"
                                            "printer IN A 192.0.2.80\n")
    wait_for(lambda: [rr.to_text() for rrset in server.query("printer.office.test.").answer for rr in rrset]
             == ["192.0.2.80"], what="the saved zonefile")
    assert server.log_text().count("the directory is empty") == 1


def test_zone_directory_without_zonefiles_names_what_it_holds(sidecar, tmp_path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "office.test").write_text("; not named *.zone\n")
    server = sidecar("--zonefile", str(zones))
    assert f"{zones}: no *.zone file in the directory (it holds office.test); nothing served from it" \
           in server.log_text()


def test_the_entrypoint_says_what_it_lacks_when_it_cannot_drop_root(tmp_path) -> None:
    """Root without SETUID/SETGID/SETPCAP (`cap_drop: [ALL]` alone) stops with one line."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    result = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-setuid,-setgid,-setpcap", "sh",
                             str(ROOT / "image" / "entrypoint.sh"), "serve"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("dns-sidecar: started as root without SETGID, SETUID and SETPCAP, which it "
                                    "needs only to drop root: add them to cap_add"), result.stderr
