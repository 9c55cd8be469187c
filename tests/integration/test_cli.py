"""The command line as a user meets it: bad flags exit 2 with one line, env vars stand in for
flags, and `check` validates sources without serving."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


def run_cli(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "nowhere:53"], "--listen: 'nowhere' is not an IP address"),
    (["--listen", "127.0.0.1:99999"], "--listen: bad port '99999'"),
    (["--upstream", "[::1"], "--upstream: missing ']'"),
    (["--zonefile", "/no/such/dir"], "--zonefile: /no/such/dir does not exist"),
    (["--record", "relative 60 IN A 192.0.2.1"], "--record: relative name 'relative' without $ORIGIN"),
    (["--record", "x.test. 60 IN A 999.0.0.1"], "--record: bad A data '999.0.0.1'"),
    (["--view", "front"], "--view: expected NAME=CIDR"),
    (["--host-address", "localhost"], "--host-address: "),
    (["--host-name", "bad..name"], "--host-name: empty label"),
    (["--timeout", "0"], "--timeout: must be above zero"),
    (["--rate-limit", "-1"], "--rate-limit: must not be negative"),
    (["--allow", "10.0.0.0/33"], "--allow: "),
    (["--http-token", "two words"], "--http-token: expected 1 or more of A-Z a-z 0-9"),
    (["--label-domain", "."], "--label-domain: the root would take in every name; name a domain"),
    (["--workers", "0"], "--workers: must be from 1 to 64, got 0"),
    (["--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
])
def test_bad_flag_exits_2_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dns-sidecar") and message in lines[0]


def test_env_var_stands_in_for_a_flag_and_the_flag_wins():
    env = {"PATH": "/usr/bin:/bin", "DNS_SIDECAR_LISTEN": "not-an-address"}
    result = run_cli("check", env=env)  # check has no --listen: the variable is not read there
    assert result.returncode == 0
    result = run_cli("serve", env=env)
    assert result.returncode == 2 and "--listen: 'not-an-address' is not an IP address" in result.stderr
    env["DNS_SIDECAR_RECORD"] = "a.test. 60 IN A 192.0.2.1\nb.test. 60 IN A 192.0.2.2"
    result = run_cli("check", env=env)
    assert result.returncode == 0 and "ok: 2 records" in result.stdout
    result = run_cli("check", "--record", "c.test. 60 IN A 192.0.2.3", env=env)
    assert "ok: 1 records" in result.stdout


def test_check_summarizes_good_sources():
    result = run_cli("check", "--zonefile", "examples/", "--record", "*.romcyber.com. 60 IN A 127.0.0.1")
    assert result.returncode == 0, result.stderr
    assert "ok: 13 records from 1 file argument(s) and 1 --record line(s)" in result.stdout
    assert "zone dev.test. (authoritative, from examples/dev.test.zone:5)" in result.stdout


def test_check_lists_every_error_as_file_line_reason(tmp_path):
    (tmp_path / "a.test.zone").write_text("ok 60 A 192.0.2.1\nbad A 192.0.2\n")
    (tmp_path / "b.test.zone").write_text("$TTL 60\n\n\nx FOO y\n")
    result = run_cli("check", "--zonefile", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path}/a.test.zone:2: bad A data '192.0.2': not an IPv4 address",
        f"{tmp_path}/b.test.zone:4: unknown RR type 'FOO'",
    ]


def test_port_in_use_exits_1_with_a_reason(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = run_cli("serve", "--no-docker", "--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.254")
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "address already in use" in result.stderr.lower()
