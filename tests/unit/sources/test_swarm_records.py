"""Swarm naming rules on plain dicts shaped as a manager's /services, /tasks, /nodes and
/networks answers (as Docker 20.10 gives them): names, views, the host view, SRV, task health."""

from __future__ import annotations

import logging

from dnslib import QTYPE

from sidecar.api import Query
from sidecar.sources.labels import NameRules
from sidecar.sources.swarm import SwarmFollower, swarm_records, swarm_role
from sidecar.zone.build import build_zone
from sidecar.zone.store import Store
from sidecar.zone.zone import Zone

FRONT, INGRESS = "n8pk8xcmbjjy", "j6wzn130mz1x"
NETWORKS = [
    {"Id": INGRESS, "Name": "ingress", "Scope": "swarm", "Ingress": True,
     "IPAM": {"Config": [{"Subnet": "10.0.0.0/24"}]}},
    {"Id": FRONT, "Name": "st_front", "Scope": "swarm", "Ingress": False,
     "IPAM": {"Config": [{"Subnet": "10.0.1.0/24"}]}},
    {"Id": "58daba1c", "Name": "docker_gwbridge", "Scope": "local", "IPAM": {"Config": [{"Subnet": "172.19.0.0/16"}]}},
]
NODES = [
    {"ID": "node1", "Status": {"State": "ready", "Addr": "192.0.2.1"}},
    {"ID": "node2", "Status": {"State": "ready", "Addr": "0.0.0.0"}, "ManagerStatus": {"Addr": "192.0.2.2:2377"}},
    {"ID": "node3", "Status": {"State": "down", "Addr": "192.0.2.3"}},
]
INSIDE, OUTSIDE = "10.0.1.200", "127.0.0.1"


def service(sid: str, name: str, mode: str = "vip", labels: dict | None = None, ports: list | None = None,
            vips: list | None = None, healthcheck: bool = False) -> dict:
    spec_ports = [{"Protocol": "tcp", "TargetPort": t, "PublishedPort": p, "PublishMode": m} for t, p, m in ports or ()]
    container = {"Healthcheck": {"Test": ["CMD", "true"]}} if healthcheck else {}
    labels = labels if labels is not None else {"com.docker.stack.namespace": "st"}
    return {"ID": sid, "Spec": {"Name": name, "Labels": labels,
                                "TaskTemplate": {"ContainerSpec": container}, "EndpointSpec": {"Mode": mode}},
            "Endpoint": {"Spec": {"Mode": mode}, "Ports": spec_ports,
                         "VirtualIPs": [{"NetworkID": net, "Addr": addr} for net, addr in vips or ()]}}


def task(sid: str, slot: int, address: str, state: str = "running", desired: str = "running",
         node: str = "node1") -> dict:
    return {"ID": f"{sid}-{slot}-{state}", "ServiceID": sid, "Slot": slot, "NodeID": node, "DesiredState": desired,
            "Status": {"State": state},
            "NetworksAttachments": [{"Network": {"ID": FRONT}, "Addresses": [f"{address}/24"]},
                                    {"Network": {"ID": INGRESS}, "Addresses": ["10.0.0.9/24"]}]}


WEB = service("web1", "st_web", ports=[(80, 8080, "ingress")], healthcheck=True,
              vips=[(INGRESS, "10.0.0.3/24"), (FRONT, "10.0.1.4/24")])
DB = service("db1", "st_db", mode="dnsrr")
TASKS = [task("web1", 1, "10.0.1.6"), task("web1", 2, "10.0.1.5", node="node2"),
         task("db1", 1, "10.0.1.2"), task("db1", 2, "10.0.1.3"),
         task("db1", 3, "10.0.1.7", state="failed", desired="shutdown"),
         task("db1", 4, "10.0.1.8", state="running", desired="shutdown")]


def zone_of(services=(WEB, DB), tasks=TASKS, nodes=NODES, rules: NameRules | None = None) -> Zone:
    result = swarm_records(list(services), tasks, nodes, NETWORKS, rules or NameRules())
    assert result.problems == ()
    return build_zone({"swarm": result.fragment})[0]


def ask(zone: Zone, name: str, client: str, qtype: int = QTYPE.A) -> list[str]:
    answer = zone.lookup(Query(name, qtype, client, views=zone.views_of(client)))
    return sorted(str(rr.rdata) for rr in answer.answer) if answer is not None else []


def test_a_vip_service_answers_its_virtual_ip_in_the_overlay_view_by_both_names() -> None:
    zone = zone_of()
    assert zone.views_of(INSIDE) == ("st_front",)
    assert zone.views_of("10.0.0.5") == ()  # the ingress network is no view
    assert zone.views_of("172.19.0.5") == ()  # local networks are the container source's
    for name in ("web.st.docker", "st_web.docker"):
        assert ask(zone, name, INSIDE) == ["10.0.1.4"]


def test_a_dnsrr_service_answers_its_running_tasks_and_tasks_names_list_every_running_task() -> None:
    zone = zone_of()
    for name in ("db.st.docker", "st_db.docker", "tasks.db.st.docker", "tasks.st_db.docker"):
        assert ask(zone, name, INSIDE) == ["10.0.1.2", "10.0.1.3"]
    assert ask(zone, "tasks.web.st.docker", INSIDE) == ["10.0.1.5", "10.0.1.6"]


def test_the_host_view_gets_the_ready_nodes_for_published_ports_and_nothing_else() -> None:
    zone = zone_of()
    assert ask(zone, "web.st.docker", OUTSIDE) == ["192.0.2.1", "192.0.2.2"]
    for name in ("db.st.docker", "tasks.web.st.docker", "tasks.db.st.docker"):
        assert ask(zone, name, OUTSIDE) == []
    pinned = zone_of(rules=NameRules(host_address=("198.51.100.7",)))
    assert ask(pinned, "web.st.docker", OUTSIDE) == ["198.51.100.7"]


def test_host_mode_ports_answer_only_the_nodes_running_a_task() -> None:
    web = service("web1", "st_web", ports=[(80, 8080, "host")], vips=[(FRONT, "10.0.1.4/24")])
    zone = zone_of(services=[web], tasks=[task("web1", 1, "10.0.1.6", node="node2")])
    assert ask(zone, "web.st.docker", OUTSIDE) == ["192.0.2.2"]


def test_srv_for_published_ports_per_view() -> None:
    zone = zone_of()
    assert ask(zone, "_80._tcp.web.st.docker", OUTSIDE, QTYPE.SRV) == ["0 1 8080 st_web.docker."]
    assert ask(zone, "_80._tcp.web.st.docker", INSIDE, QTYPE.SRV) == ["0 1 80 st_web.docker."]
    assert ask(zone, "_80._tcp.db.st.docker", INSIDE, QTYPE.SRV) == []


def test_starting_tasks_are_withheld_while_a_healthy_one_remains() -> None:
    one_starting = [task("web1", 1, "10.0.1.6"), task("web1", 2, "10.0.1.5", state="starting")]
    assert ask(zone_of(tasks=one_starting), "tasks.web.st.docker", INSIDE) == ["10.0.1.6"]
    all_starting = [task("web1", 1, "10.0.1.6", state="starting"), task("web1", 2, "10.0.1.5", state="starting")]
    assert ask(zone_of(tasks=all_starting), "tasks.web.st.docker", INSIDE) == ["10.0.1.5", "10.0.1.6"]


def test_a_service_outside_a_stack_has_its_own_name_only_and_labels_add_claimed_names() -> None:
    plain = service("p1", "plain", labels={"dns-sidecar.names": "api.example.test"}, vips=[(FRONT, "10.0.1.20/24")])
    zone = zone_of(services=[plain], tasks=[])
    assert ask(zone, "plain.docker", INSIDE) == ["10.0.1.20"]
    assert ask(zone, "api.example.test", INSIDE) == ["10.0.1.20"]
    assert "plain.st.docker." not in zone.nodes


def test_opt_out_opt_in_and_a_bad_label_named_by_service() -> None:
    off = service("o1", "st_off", labels={"dns-sidecar.enable": "false", "com.docker.stack.namespace": "st"},
                  vips=[(FRONT, "10.0.1.30/24")])
    assert swarm_records([off], [], NODES, NETWORKS, NameRules()).fragment.records == ()
    assert swarm_records([WEB], TASKS, NODES, NETWORKS, NameRules(opt_in=True)).fragment.records == ()
    bad = service("b1", "st_bad", labels={"dns-sidecar.names": "ok.test,bad_.-name"}, vips=[(FRONT, "10.0.1.31/24")])
    result = swarm_records([bad], [], NODES, NETWORKS, NameRules())
    assert [p.split(":")[0] for p in result.problems] == ["service st_bad"]
    assert {rec.name for rec in result.fragment.records} >= {"ok.test.", "st_bad.docker."}


def test_swarm_role_from_info() -> None:
    assert swarm_role({"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}) == "manager"
    assert swarm_role({"Swarm": {"LocalNodeState": "active", "ControlAvailable": False}}) == "worker"
    assert swarm_role({"Swarm": {"LocalNodeState": "inactive"}}) is None
    assert swarm_role({}) is None  # Podman


def test_a_worker_is_told_once_and_nothing_is_followed(caplog) -> None:
    follower = SwarmFollower(Store(), NameRules(), connect=lambda: None)
    worker = {"Swarm": {"LocalNodeState": "active", "ControlAvailable": False}}
    with caplog.at_level(logging.INFO, logger="sidecar.sources.swarm"):
        follower.follow(worker, "unix:///w.sock")
        follower.follow(worker, "unix:///w.sock")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "is a swarm worker" in lines[0] and "docs/swarm.md" in lines[0], lines
    assert not follower.following


def test_a_task_on_its_way_to_running_asks_for_a_quick_second_read() -> None:
    def settling(services, tasks) -> bool:
        return swarm_records(services, tasks, NODES, NETWORKS, NameRules()).settling

    assert not settling([WEB, DB], TASKS)
    assert settling([DB], [task("db1", 1, "10.0.1.2", state="ready")])
    assert settling([DB], [task("db1", 1, "10.0.1.2", state="starting")])
    assert not settling([WEB], [task("web1", 1, "10.0.1.6", state="starting")])  # its healthcheck may take long
    assert not settling([DB], [task("db1", 1, "10.0.1.2", state="ready", desired="shutdown")])
