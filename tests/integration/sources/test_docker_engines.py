"""Docker and Podman, for real: names, labels, aliases and PTR on both engines; every way a
container goes away seen within a second on both; aliases from a real docker-compose file; health
from a real HEALTHCHECK; SRV and the host's name per view. Every query goes to a sidecar on
loopback (a loopback source address stands in for a network with `--view`); container addresses
only ever appear inside answers."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Callable

import docker
import pytest
import yaml

from bench.daemons import free_port
from sidecar.api import Query
from sidecar.sources.docker import DockerSource
from sidecar.sources.labels import NameRules
from sidecar.zone.store import Store
from tests.helpers.dockerd import IMAGE, docker_client_fixture, docker_engine_fixture  # noqa: F401 - fixtures
from tests.helpers.podman import podman_client_fixture, podman_engine_fixture  # noqa: F401 - fixtures
from tests.helpers.process import wait_for
from tests.integration.sources.test_docker import address, answers, eventually

REMOVAL_DEADLINE = 1.0  # seconds from the engine saying it is done to the name being gone
FRONT_VIEW, BACK_VIEW = "127.0.0.5", "127.0.0.6"
ENGINES = ["docker", "podman"]


@pytest.fixture(params=ENGINES)
def engine(request):
    """(engine, SDK client) for each engine in turn; the client's fixture cleans up after the test."""
    name = request.param
    return request.getfixturevalue(f"{name}_engine"), request.getfixturevalue(f"{name}_client")


@pytest.fixture
def serve_on(sidecar, tmp_path):
    """Factory: a sidecar watching `engine`, with no upstream (nothing leaves loopback)."""
    empty = tmp_path / "resolv.conf"
    empty.write_text("")

    def start(engine, *args: str):
        http = free_port("127.0.0.1")
        server = sidecar("--resolv-conf", str(empty), "--http", f"127.0.0.1:{http}", *args, docker=True,
                         env={"DOCKER_HOST": engine.url})
        server.extra["http"] = http
        wait_for(lambda: "following events" in server.log_text(), what="the first list of containers")
        return server

    return start


def run(client: docker.DockerClient, name: str, network: str, aliases: tuple[str, ...] = (),
        command: tuple[str, ...] = ("sleep", "300"), **kwargs) -> docker.models.containers.Container:
    """A busybox container on `network` with `aliases` there (as `--network-alias` gives them)."""
    endpoint = {network: client.api.create_endpoint_config(aliases=list(aliases))} if aliases else None
    container = client.containers.create(IMAGE, list(command), name=name, network=network,
                                         networking_config=endpoint, **kwargs)
    container.start()
    container.reload()
    return container


def gone_within_deadline(server, name: str) -> None:
    wait_for(lambda: answers(server, name) == [], timeout=REMOVAL_DEADLINE, interval=0.02,
             what=f"{name} gone within {REMOVAL_DEADLINE} s")


def records(server) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.extra['http']}/records", timeout=5) as reply:
        return json.load(reply)


# -- names on both engines ------------------------------------------------------------------------

@pytest.mark.docker
def test_names_labels_aliases_and_ptr_on_each_engine(engine, serve_on):
    eng, client = engine
    client.networks.create("front")
    client.networks.create("back")
    server = serve_on(eng, "--view", f"front={FRONT_VIEW}/32", "--view", f"back={BACK_VIEW}/32")
    started = next(line for line in server.log_text().splitlines() if "following events" in line)
    assert f"{'Podman' if 'podman' in eng.url else 'Docker'} " in started.split(f" at {eng.url}")[0], started
    web = run(client, "web", "front", ("db", "db.dev.test"), labels={"dns-sidecar.names": "web.dev.test"})
    on_front = address(web, "front")
    eventually(server, "web.docker", [on_front])
    assert answers(server, "web.dev.test") == [on_front]
    assert answers(server, "db.dev.test") == [on_front]  # a dotted alias: every view
    assert answers(server, "db.dev.test", source=BACK_VIEW) == [on_front]
    for scoped in ("db", "db.docker"):
        assert answers(server, scoped, source=FRONT_VIEW) == [on_front], scoped
        assert answers(server, scoped, source=BACK_VIEW) == [], scoped
        assert answers(server, scoped) == [], scoped
    ptr = answers(server, ipaddress.ip_address(on_front).reverse_pointer, "PTR")
    assert ptr == ["db.dev.test.", "web.dev.test.", "web.docker."]


def _stop(client, container) -> None:
    container.stop(timeout=1)  # sleep ignores SIGTERM: killed when its grace period is over


def _kill(client, container) -> None:
    container.kill()


def _exit(client, container) -> None:
    container.wait(timeout=30)  # it runs `sleep 5` and exits on its own


def _remove(client, container) -> None:
    container.remove(force=True)


def _rename(client, container) -> None:
    container.rename("renamed")


REMOVALS: dict[str, Callable] = {"stop": _stop, "kill": _kill, "exit": _exit, "rm -f": _remove, "rename": _rename}


@pytest.mark.docker
@pytest.mark.parametrize("how", list(REMOVALS))
def test_every_removal_is_seen_within_a_second(engine, serve_on, how):
    eng, client = engine
    client.networks.create("net")
    server = serve_on(eng)
    command = ("sleep", "5") if how == "exit" else ("sleep", "300")
    victim = run(client, "victim", "net", ("victim-alias.dev.test",), command=command)
    eventually(server, "victim.docker", [address(victim, "net")])
    REMOVALS[how](client, victim)
    gone_within_deadline(server, "victim.docker")
    if how == "rename":
        eventually(server, "renamed.docker", [address(victim, "net")])
        assert answers(server, "victim-alias.dev.test") == [address(victim, "net")]
    else:
        assert answers(server, "victim-alias.dev.test") == []
        assert answers(server, ipaddress.ip_address(address(victim, "net")).reverse_pointer, "PTR") == []
    assert "cannot inspect" not in server.log_text()


# -- aliases in two networks: compose and --network-alias -------------------------------------------

COMPOSE_FILE = {
    "version": "3.4",
    "services": {
        "web": {"image": IMAGE, "command": ["sleep", "300"], "stop_signal": "SIGKILL",
                "networks": {"front": {}, "back": {"aliases": ["api", "api.dev.test"]}}},
    },
    "networks": {"front": {}, "back": {}},
}


def compose(*args: str, cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Debian's `docker-compose` (v1) run on the engine `env` names."""
    return subprocess.run(["docker-compose", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=180, check=False)


@pytest.mark.docker
@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_aliases_per_network_and_two_projects_never_mix(docker_engine, docker_client, serve_on, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(COMPOSE_FILE))
    env = docker_engine.env()
    for project in ("one", "two"):
        result = compose("-p", project, "up", "-d", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout.decode()
    one, two = (docker_client.containers.get(f"{p}_web_1") for p in ("one", "two"))
    server = serve_on(docker_engine, "--view", f"one_front={FRONT_VIEW}/32", "--view", f"two_back={BACK_VIEW}/32")
    eventually(server, "web", [address(one, "one_front")], source=FRONT_VIEW)
    assert answers(server, "web.docker", source=FRONT_VIEW) == [address(one, "one_front")]
    assert answers(server, "web", source=BACK_VIEW) == [address(two, "two_back")]
    assert answers(server, "api", source=BACK_VIEW) == [address(two, "two_back")]
    assert answers(server, "api", source=FRONT_VIEW) == []  # `api` is an alias on back only
    assert answers(server, "web") == []  # the host is on no network: scoped names are not its
    assert sorted(answers(server, "api.dev.test")) == sorted([address(one, "one_back"), address(two, "two_back")])
    assert answers(server, "api.dev.test", source=BACK_VIEW) == [address(two, "two_back")]

    store = Store()  # in process: clients placed by their own address in the engine's real subnets
    source = DockerSource(store, NameRules(), docker_engine.url)
    source.start()
    try:
        assert source.wait_first_attempt(10) and source.connected
        zone = store.zone
        for project in (one, two):
            for network in ("front", "back"):
                net = docker_client.networks.get(f"{project.name.split('_')[0]}_{network}")
                client = str(ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"]).network_address + 200)
                answer = zone.lookup(Query("web", 1, client, views=zone.views_of(client)))
                assert [str(rr.rdata) for rr in answer.answer] == [address(project, net.name)], (client, net.name)
    finally:
        source.stop()
    for project in ("one", "two"):
        compose("-p", project, "down", "-t", "0", cwd=tmp_path, env=env)


@pytest.mark.docker
def test_network_alias_shared_by_two_containers_answers_both(engine, serve_on):
    eng, client = engine
    client.networks.create("front")
    server = serve_on(eng, "--view", f"front={FRONT_VIEW}/32")
    first, second = (run(client, f"cache-{i}", "front", ("cache",)) for i in (1, 2))
    eventually(server, "cache", sorted([address(first, "front"), address(second, "front")]), source=FRONT_VIEW)


# -- health ------------------------------------------------------------------------------------------

HEALTHCHECK = {"test": ["CMD", "test", "-f", "/healthy"], "interval": 500_000_000, "timeout": 2_000_000_000,
               "retries": 1}


@pytest.mark.docker
def test_health_withholds_failing_replicas_and_answers_all_when_none_is_good(docker_client, docker_engine,
                                                                             serve_on):
    docker_client.networks.create("net")
    server = serve_on(docker_engine)
    labels = {"com.docker.compose.service": "app", "com.docker.compose.project": "hp"}
    one, two = (run(docker_client, f"hp-app-{i}", "net", labels=labels, healthcheck=HEALTHCHECK, stop_signal="SIGKILL")
                for i in (1, 2))
    both = sorted([address(one, "net"), address(two, "net")])
    eventually(server, "app.hp.docker", both)  # both starting: all answered, and said once
    one.exec_run(["touch", "/healthy"])
    eventually(server, "app.hp.docker", [address(one, "net")])
    two.exec_run(["touch", "/healthy"])
    eventually(server, "app.hp.docker", both)
    one.exec_run(["rm", "/healthy"])
    eventually(server, "app.hp.docker", [address(two, "net")])
    rows = [r for r in records(server) if r["name"] == "app.hp.docker." and r["view"] is None]
    assert sorted(r["health"] for r in rows) == ["healthy", "unhealthy"]
    two.exec_run(["rm", "/healthy"])
    eventually(server, "app.hp.docker", both)
    log = server.log_text()
    assert log.count("app.hp.docker.: no replica is healthy; all are answered") == 1
    assert "container hp-app-1: health unhealthy" in log

    ignored = run(docker_client, "ignored", "net", labels={"dns-sidecar.health": "ignore",
                                                             "dns-sidecar.names": "app.hp.docker"},
                  healthcheck=HEALTHCHECK, stop_signal="SIGKILL")
    eventually(server, "app.hp.docker", [address(ignored, "net")])  # unchecked, so the only good one


@pytest.mark.docker
def test_podman_health_from_a_healthcheck_run(podman_engine, podman_client, serve_on):
    podman_client.networks.create("net")
    server = serve_on(podman_engine)
    labels = {"dns-sidecar.names": "app.dev.test"}
    one, two = (run(podman_client, f"app-{i}", "net", labels=labels, healthcheck=HEALTHCHECK) for i in (1, 2))
    eventually(server, "app.dev.test", sorted([address(one, "net"), address(two, "net")]))
    one.exec_run(["touch", "/healthy"])
    # Podman runs a healthcheck only when asked here (no systemd timers); a check slowed past its
    # timeout by a busy machine counts as failed, so app-1's is run until it passes.
    wait_for(lambda: podman_engine.podman("healthcheck", "run", one.name).returncode == 0, timeout=60,
             interval=0.5, what="app-1's healthcheck to pass")
    podman_engine.podman("healthcheck", "run", two.name)
    eventually(server, "app.dev.test", [address(one, "net")])


# -- SRV and the host's name --------------------------------------------------------------------------

@pytest.mark.docker
def test_srv_in_both_views(docker_client, docker_engine, serve_on):
    docker_client.networks.create("front")
    server = serve_on(docker_engine, "--view", f"front={FRONT_VIEW}/32")
    web = run(docker_client, "web", "front", ports={"80/tcp": ("127.0.0.1", None)},
              labels={"dns-sidecar.srv": "http:80/tcp,bad:80"}, stop_signal="SIGKILL")
    host_port = web.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    eventually(server, "_80._tcp.web.docker", ["0 1 80 web.docker."], "SRV", source=FRONT_VIEW)
    assert answers(server, "_http._tcp.web.docker", "SRV", source=FRONT_VIEW) == ["0 1 80 web.docker."]
    assert answers(server, "_http._tcp.web.docker", "SRV") == [f"0 1 {host_port} host.docker.internal."]
    reply = server.query("_80._tcp.web.docker", "SRV", source=FRONT_VIEW)
    assert [rr.to_text() for rrset in reply.additional for rr in rrset] == [address(web, "front")]
    assert "container web: label dns-sidecar.srv='bad:80': expected PORT/tcp|udp|sctp; skipped" in server.log_text()


@pytest.mark.docker
def test_host_name_per_view(engine, serve_on):
    eng, client = engine
    client.networks.create("front")
    web = run(client, "web", "front")
    gateway = web.attrs["NetworkSettings"]["Networks"]["front"]["Gateway"]
    assert ipaddress.ip_address(gateway)
    default = serve_on(eng, "--view", f"front={FRONT_VIEW}/32")
    flagged = serve_on(eng, "--view", f"front={FRONT_VIEW}/32", "--host-address", "192.0.2.80",
                       "--host-name", "host.docker.internal", "--host-name", "gw.dev.test")
    eventually(default, "host.docker.internal", [gateway], source=FRONT_VIEW)
    assert answers(default, "host.docker.internal") == ["127.0.0.1"]
    assert answers(default, "host.docker.internal", source=BACK_VIEW) == ["127.0.0.1"]
    eventually(flagged, "gw.dev.test", [gateway], source=FRONT_VIEW)
    assert answers(flagged, "gw.dev.test") == ["192.0.2.80"]
    assert answers(flagged, "host.docker.internal") == ["192.0.2.80"]



class _RemovalUnderWay:
    """A fake engine (the race cannot be produced on demand): it inspects the container once,
    then answers as Podman does while the container is being removed, with an error that says it
    is gone rather than a 404."""

    def __init__(self, info: dict) -> None:
        self.info: dict | None = info

    def inspect_container(self, container: str) -> dict:
        info, self.info = self.info, None
        if info is None:
            raise docker.errors.APIError("500 Server Error", explanation=f"container {container}: no such container")
        return info


def test_an_inspect_saying_no_such_container_removes_its_names():
    store = Store()
    source = DockerSource(store, NameRules(), "unix:///nonexistent.sock")
    info = {"Id": "a" * 64, "Name": "/web", "State": {"Running": True}, "Config": {},
            "NetworkSettings": {"Networks": {"net": {"IPAddress": "192.0.2.5", "IPPrefixLen": 24}}}}
    engine = _RemovalUnderWay(info)
    for action in ("start", "stop"):
        source._on_event(engine, {"Type": "container", "Action": action, "Actor": {"ID": info["Id"]}})
        if action == "start":
            assert store.zone.lookup(Query("web.docker", 1)).answer
    assert store.zone.lookup(Query("web.docker", 1)) is None
