"""The names both servers answer, written in each one's language.

- local: a zone `bench.test.` (ours: a zonefile with an SOA; dnsmasq: host-record lines) and a few
  override names (ours: `--record`; dnsmasq: host-record), TTL 300;
- forwarded: `fwd.test.` (TTL 300, cacheable) and `nocache.test.` (TTL 0) served by an upstream
  dnsmasq that both servers relay to.
Each workload has a dnsperf query file of names repeated from that set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TTL = 300
ZONE = "bench.test."
OVERRIDES = ("api.override.test.", "db.override.test.", "cache.override.test.")
QUERIED_NAMES = 100


def address(i: int) -> str:
    return f"198.51.100.{i % 250 + 1}"


def zone_text(origin: str, count: int, prefix: str = "h", salt: int = 0) -> str:
    """A zonefile owning `origin` with `count` A records `<prefix>N.<origin>`."""
    lines = [f"$ORIGIN {origin}", f"$TTL {TTL}",
             f"@ IN SOA ns.{origin} admin.{origin} ( 1 3600 600 86400 60 )", f"@ IN NS ns.{origin}",
             "ns IN A 192.0.2.53"]
    lines.extend(f"{prefix}{i} IN A {address(i + salt)}" for i in range(count))
    return "\n".join(lines) + "\n"


def write_zonefile(path: Path, origin: str, count: int, prefix: str = "h", salt: int = 0) -> Path:
    """Write atomically (rename), so a watcher never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(zone_text(origin, count, prefix, salt))
    tmp.rename(path)
    return path


@dataclass(frozen=True)
class DataSet:
    workdir: Path
    local_names: int = 1000

    @property
    def zonefile(self) -> Path:
        return self.workdir / "bench.test.zone"

    def sidecar_args(self) -> list[str]:
        args = ["--zonefile", str(self.zonefile)]
        for i, name in enumerate(OVERRIDES):
            args += ["--record", f"{name} {TTL} IN A {address(i)}"]
        return args

    def write(self) -> None:
        write_zonefile(self.zonefile, ZONE, self.local_names)
        local = [f"host-record=h{i}.{ZONE[:-1]},{address(i)},{TTL}" for i in range(self.local_names)]
        local += [f"host-record={name[:-1]},{address(i)},{TTL}" for i, name in enumerate(OVERRIDES)]
        local.append(f"host-record=ns.{ZONE[:-1]},192.0.2.53,{TTL}")
        self.dnsmasq_conf.write_text("\n".join(local) + "\n")
        upstream = [f"host-record=f{i}.fwd.test,{address(i)},{TTL}" for i in range(QUERIED_NAMES)]
        upstream += [f"host-record=n{i}.nocache.test,{address(i)},0" for i in range(QUERIED_NAMES)]
        self.upstream_conf.write_text("\n".join(upstream) + "\n")
        names = {
            "local": [f"h{i}.{ZONE}" for i in range(QUERIED_NAMES - len(OVERRIDES))] + list(OVERRIDES),
            "forward-cached": [f"f{i}.fwd.test." for i in range(QUERIED_NAMES)],
            "forward-uncacheable": [f"n{i}.nocache.test." for i in range(QUERIED_NAMES)],
        }
        for workload, queried in names.items():
            self.queries(workload).write_text("".join(f"{n} A\n" for n in queried))

    @property
    def dnsmasq_conf(self) -> Path:
        return self.workdir / "dnsmasq-local.conf"

    @property
    def upstream_conf(self) -> Path:
        return self.workdir / "dnsmasq-upstream.conf"

    def queries(self, workload: str) -> Path:
        return self.workdir / f"queries-{workload}.txt"


WORKLOADS = ("local", "forward-cached", "forward-uncacheable")
