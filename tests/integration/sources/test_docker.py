"""The Docker source against a real engine: containers become names live, answers depend on the
client's network, the engine may vanish and return. Every query goes to the sidecar on loopback;
container addresses only ever appear inside answers."""

from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

import docker
import pytest
from dnslib import QTYPE

from sidecar.api import Query
from sidecar.sources.docker import DockerSource, docker_endpoint
from sidecar.sources.labels import NameRules
from sidecar.zone.store import Store
from tests.helpers.dockerd import IMAGE, Dockerd, docker_client_fixture, docker_engine_fixture  # noqa: F401 - fixtures
from tests.helpers.process import query, wait_for

V6_SUBNET = "2001:db8:5::/64"


@pytest.fixture
def serve(sidecar, docker_engine, tmp_path):
    """Factory: a sidecar watching the test engine, with no upstream (nothing leaves loopback)."""
    empty = tmp_path / "resolv.conf"
    empty.write_text("")

    def start(*args: str, engine: Dockerd = docker_engine, ready: bool = True):
        return sidecar("--resolv-conf", str(empty), *args, docker=True, env={"DOCKER_HOST": engine.url},
                       ready=ready)

    return start


def run(client: docker.DockerClient, name: str, labels: dict[str, str] | None = None, network: str | None = None,
        **kwargs) -> docker.models.containers.Container:
    """A sleeping busybox container that stops at once when asked."""
    container = client.containers.run(IMAGE, ["sleep", "300"], name=name, labels=labels or {}, detach=True,
                                      network=network, stop_signal="SIGKILL", **kwargs)
    container.reload()
    return container


def address(container, network: str, v6: bool = False) -> str:
    settings = container.attrs["NetworkSettings"]["Networks"][network]
    return settings["GlobalIPv6Address" if v6 else "IPAddress"]


def answers(server, name: str, rdtype: str = "A", source: str | None = None) -> list[str]:
    """Sorted rdata of the answers of type `rdtype` ([] for none, whatever the rcode)."""
    reply = query(server.host, server.port, name, rdtype, source=source)
    return sorted(rr.to_text() for rrset in reply.answer if rrset.rdtype == QTYPE.reverse[rdtype] for rr in rrset)


def eventually(server, name: str, expected: list[str], rdtype: str = "A", source: str | None = None) -> None:
    wait_for(lambda: answers(server, name, rdtype, source) == sorted(expected), timeout=10,
             what=f"{name} {rdtype} -> {expected} (last: {answers(server, name, rdtype, source)})")


def network(client: docker.DockerClient, name: str, ipv6: bool = False):
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=V6_SUBNET)]) if ipv6 else None
    return client.networks.create(name, enable_ipv6=ipv6, ipam=ipam)


@pytest.mark.docker
def test_names_from_name_labels_peers_hostname_with_aaaa_and_ptr(serve, docker_client):
    server = serve()
    network(docker_client, "v6net", ipv6=True)
    web = run(docker_client, "web", {"dns-sidecar.names": "web.dev.test,*.web.dev.test",
                                     "com.dnsdock.alias": "dock.peer.test",
                                     "coredns.dockerdiscovery.host": "core.peer.test"},
              "v6net", environment={"HOSTNAMES": "dps.peer.test"}, hostname="db", domainname="corp.test")
    v4, v6 = address(web, "v6net"), address(web, "v6net", v6=True)
    assert ipaddress.ip_address(v6) in ipaddress.ip_network(V6_SUBNET)
    eventually(server, "web.docker", [v4])
    for name in ("web.dev.test", "api.web.dev.test", "dock.peer.test", "core.peer.test", "dps.peer.test",
                 "db.corp.test"):
        assert answers(server, name) == [v4], name
    assert answers(server, "web.docker", "AAAA") == [v6]
    assert answers(server, "x.api.web.dev.test", "AAAA") == [v6]
    reply = server.query("web.docker")
    assert reply.answer[0].ttl == 10
    ptr = answers(server, ipaddress.ip_address(v4).reverse_pointer, "PTR")
    assert ptr == sorted(["web.docker.", "web.dev.test.", "dock.peer.test.", "core.peer.test.",
                          "dps.peer.test.", "db.corp.test."])
    assert "web.docker." in answers(server, ipaddress.ip_address(v6).reverse_pointer, "PTR")


@pytest.mark.docker
def test_listed_at_start_compose_replicas_stop_start_rename_destroy(serve, docker_client):
    compose = {"com.docker.compose.service": "app", "com.docker.compose.project": "myproj"}
    network(docker_client, "myproj_default")
    one = run(docker_client, "myproj-app-1", compose, "myproj_default")
    two = run(docker_client, "myproj-app-2", compose, "myproj_default")
    server = serve()  # both were running before it started: found by the initial list
    first, second = address(one, "myproj_default"), address(two, "myproj_default")
    assert answers(server, "app.myproj.docker") == sorted([first, second])
    assert answers(server, "myproj-app-1.docker") == [first]
    for name in ("myproj-app-1", "myproj-app-2"):  # the start names each container's names
        assert f"container {name}: named app.myproj.docker., {name}.docker." in server.log_text()

    two.stop()
    eventually(server, "app.myproj.docker", [first])
    assert answers(server, "myproj-app-2.docker") == []
    assert "container myproj-app-2: removed, with app.myproj.docker., myproj-app-2.docker." in server.log_text()
    two.start()
    two.reload()
    eventually(server, "app.myproj.docker", [first, address(two, "myproj_default")])
    assert "container myproj-app-2: added: app.myproj.docker., myproj-app-2.docker." in server.log_text()

    one.rename("renamed")
    eventually(server, "renamed.docker", [first])
    assert answers(server, "myproj-app-1.docker") == []
    one.remove(force=True)
    eventually(server, "renamed.docker", [])
    assert answers(server, ipaddress.ip_address(first).reverse_pointer, "PTR") == []


@pytest.mark.docker
def test_views_over_loopback_follow_connect_and_disconnect(serve, docker_client):
    server = serve("--view", "front=127.0.0.5/32", "--view", "back=127.0.0.6/32")
    front, back = network(docker_client, "front"), network(docker_client, "back")
    web = run(docker_client, "web", network="front")
    on_front = address(web, "front")
    eventually(server, "web.docker", [on_front])
    assert answers(server, "web.docker", source="127.0.0.5") == [on_front]
    assert answers(server, "web.docker", source="127.0.0.6") == [on_front]  # not on back: host view

    back.connect(web)
    web.reload()
    on_back = address(web, "back")
    eventually(server, "web.docker", [on_back], source="127.0.0.6")
    assert answers(server, "web.docker", source="127.0.0.5") == [on_front]
    assert answers(server, "web.docker") == [on_back]  # host view: first network by name ("back")

    front.disconnect(web)
    eventually(server, "web.docker", [on_back], source="127.0.0.5")
    assert answers(server, "web.docker") == [on_back]


@pytest.mark.docker
def test_host_view_from_label_flag_and_network_label(serve, docker_client):
    server = serve("--host-address", "192.0.2.80", "--view", "front=127.0.0.5/32")
    network(docker_client, "front")
    network(docker_client, "back")
    published = run(docker_client, "published", {"dns-sidecar.host-address": "127.0.0.1"}, "front")
    plain = run(docker_client, "plain", network="front")
    eventually(server, "published.docker", ["127.0.0.1"])
    eventually(server, "plain.docker", ["192.0.2.80"])
    assert answers(server, "published.docker", source="127.0.0.5") == [address(published, "front")]
    assert answers(server, "plain.docker", source="127.0.0.5") == [address(plain, "front")]

    default = serve()
    docker_client.networks.get("back").connect(plain)
    chosen = run(docker_client, "chosen", {"dns-sidecar.network": "front"}, "front")
    docker_client.networks.get("back").connect(chosen)
    plain.reload()
    chosen.reload()
    eventually(default, "plain.docker", [address(plain, "back")])
    eventually(default, "chosen.docker", [address(chosen, "front")])


@pytest.mark.docker
def test_opt_in_and_opt_out(serve, docker_client):
    opt_in, everyone = serve("--docker-opt-in"), serve()
    network(docker_client, "net")
    labelled = run(docker_client, "labelled", {"dns-sidecar.enable": "true"}, "net")
    run(docker_client, "unlabelled", network="net")
    run(docker_client, "refused", {"dns-sidecar.enable": "false"}, "net")
    eventually(opt_in, "labelled.docker", [address(labelled, "net")])
    eventually(everyone, "unlabelled.docker", [address(docker_client.containers.get("unlabelled"), "net")])
    assert answers(opt_in, "unlabelled.docker") == []
    assert answers(everyone, "refused.docker") == []


@pytest.mark.docker
def test_bad_label_is_logged_with_the_container_and_the_rest_still_answers(serve, docker_client):
    server = serve()
    network(docker_client, "net")
    bad = run(docker_client, "bad-labels", {"dns-sidecar.names": "good.dev.test,bad..name",
                                            "dns-sidecar.ttl": "soon"}, "net")
    eventually(server, "good.dev.test", [address(bad, "net")])
    assert server.query("good.dev.test").answer[0].ttl == 10
    log = server.log_text()
    assert "container bad-labels: label dns-sidecar.names='bad..name': empty label; skipped" in log
    assert "container bad-labels: label dns-sidecar.ttl='soon'" in log


@pytest.mark.docker
def test_names_outside_the_policy_are_logged_and_dropped_and_the_operator_wins(serve, docker_client):
    server = serve("--record", "mine.dev.test. 60 IN A 192.0.2.10")
    network(docker_client, "net")
    greedy = run(docker_client, "greedy", {"dns-sidecar.names": "*.com,localhost,web.dev.test,mine.dev.test"}, "net",
                 environment={"HOSTNAMES": "www.google.com"}, hostname="www", domainname="example.org")
    eventually(server, "web.dev.test", [address(greedy, "net")])  # the container's other names stand
    for name in ("www.google.com", "localhost", "www.example.org"):
        assert answers(server, name) == [], name  # not local: relayed (here, to no upstream at all)
    assert answers(server, "mine.dev.test") == ["192.0.2.10"]  # the operator's --record, alone
    log = server.log_text()
    for line in ("container greedy: label dns-sidecar.names='*.com': refused: not under a domain containers may "
                 "claim (docker., test., example., invalid., internal., home.arpa.); skipped",
                 "container greedy: label dns-sidecar.names='localhost': refused: localhost is loopback's alone; "
                 "skipped",
                 "container greedy: env HOSTNAMES='www.google.com': refused: not under a domain",
                 "container greedy: hostname.domainname='www.example.org': refused: not under a domain",
                 "container greedy: mine.dev.test. is held by --record:1; the operator's records win"):
        assert line in log, line


@pytest.mark.docker
def test_label_domain_lets_containers_claim_more(serve, docker_client):
    server = serve("--label-domain", "corp.example.com")
    network(docker_client, "net")
    web = run(docker_client, "web", {"dns-sidecar.names": "web.corp.example.com,*.corp.example.com"}, "net")
    eventually(server, "web.corp.example.com", [address(web, "net")])
    assert answers(server, "other.corp.example.com") == [address(web, "net")]


@pytest.mark.docker
def test_two_containers_claiming_one_name_give_both(serve, docker_client):
    server = serve()
    network(docker_client, "net")
    one = run(docker_client, "one", {"dns-sidecar.names": "shared.dev.test"}, "net")
    two = run(docker_client, "two", {"dns-sidecar.names": "shared.dev.test"}, "net")
    eventually(server, "shared.dev.test", [address(one, "net"), address(two, "net")])


@pytest.mark.docker
def test_nslookup_from_a_container(serve, docker_client):
    server = serve()
    network(docker_client, "net")
    web = run(docker_client, "web", network="net")
    eventually(server, "web.docker", [address(web, "net")])
    output = docker_client.containers.run(IMAGE, ["nslookup", f"-port={server.port}", "web.docker", "127.0.0.1"],
                                          network_mode="host", dns=["127.0.0.1"], remove=True)
    assert address(web, "net") in output.decode()


@pytest.mark.docker
def test_in_process_views_with_real_subnets(docker_engine, docker_client):
    """Clients placed by their own address in the engine's real subnets (no packet sent)."""
    front, back = network(docker_client, "front"), network(docker_client, "back")
    web = run(docker_client, "web", network="front")
    back.connect(web)
    web.reload()
    run(docker_client, "peer", network="front")
    front.reload()
    store = Store()
    source = DockerSource(store, NameRules(), docker_engine.url)
    source.start()
    try:
        assert source.wait_first_attempt(10) and source.connected
        zone = store.zone
        subnet = ipaddress.ip_network(front.attrs["IPAM"]["Config"][0]["Subnet"])
        client = str(subnet.network_address + 200)

        def ask(client: str) -> list[str]:
            answer = zone.lookup(Query("web.docker", QTYPE.A, client, views=zone.views_of(client)))
            return [str(rr.rdata) for rr in answer.answer]

        assert zone.views_of(client) == ("front",)
        assert sorted(view for _, view in zone.view_networks) == ["back", "front"]  # each subnet once
        assert ask(client) == [address(web, "front")]
        assert ask("127.0.0.1") == [address(web, "back")]
        late = run(docker_client, "late", network="back")
        wait_for(lambda: zone is not store.zone and store.zone.lookup(Query("late.docker", QTYPE.A)),
                 what="late.docker from its start event")
        assert sorted(view for _, view in store.zone.view_networks) == ["back", "front"]
        late.remove(force=True)
    finally:
        source.stop()


@pytest.mark.docker
def test_engine_restart_keeps_names_then_resyncs(serve, docker_engine, docker_client):
    network(docker_client, "net")
    kept = run(docker_client, "kept", network="net")
    lost = run(docker_client, "lost", network="net")
    server = serve()
    eventually(server, "lost.docker", [address(lost, "net")])

    docker_engine.stop(keep_containers=True)  # live restore: containers outlive the engine
    wait_for(lambda: "lost the Docker engine" in server.log_text(), what="the engine loss logged")
    assert answers(server, "kept.docker") == [address(kept, "net")]
    assert answers(server, "lost.docker") == [address(lost, "net")]
    os.kill(lost.attrs["State"]["Pid"], signal.SIGKILL)  # dies unseen: no engine to send an event
    late = serve("--record", "flag.dev.test. 60 IN A 192.0.2.7")  # no engine at its start
    assert "no Docker engine at" in late.log_text()
    assert answers(late, "flag.dev.test") == ["192.0.2.7"]

    docker_engine.start()
    eventually(server, "lost.docker", [])
    assert answers(server, "kept.docker") == [address(kept, "net")]
    eventually(late, "kept.docker", [address(kept, "net")])
    assert late.log_text().count("no Docker engine at") == 1


def test_no_engine_at_start_serves_the_rest_and_says_so_once(sidecar, tmp_path):
    empty = tmp_path / "resolv.conf"
    empty.write_text("")
    url = f"unix://{tmp_path}/nothing.sock"
    server = sidecar("--resolv-conf", str(empty), "--record", "flag.dev.test. 60 IN A 192.0.2.7", docker=True,
                     env={"DOCKER_HOST": url})
    assert answers(server, "flag.dev.test") == ["192.0.2.7"]
    wait_for(lambda: server.log_text().count("still unreachable") >= 3, what="several retries")
    log = server.log_text()
    assert f"Docker source on: watching {url}" in log
    assert log.count("no Docker engine at") == 1


def test_docker_endpoint_prefers_docker_host(tmp_path: Path, monkeypatch):
    assert docker_endpoint({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"
    monkeypatch.setattr("sidecar.sources.docker.DEFAULT_SOCKET", str(tmp_path / "docker.sock"))
    assert docker_endpoint({}) is None
    (tmp_path / "docker.sock").touch()
    assert docker_endpoint({"DOCKER_HOST": ""}) == f"unix://{tmp_path}/docker.sock"
