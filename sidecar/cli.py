"""Flags and env vars -> `Config`, subcommands, exit codes. No DNS logic lives here.

Every flag `--some-flag` can also be set with `DNS_SIDECAR_SOME_FLAG` (a flag on the command line
wins). Repeatable flags take several values from the env var separated by commas, except
`--record` and `--forward`, whose values are separated by newlines. A bad flag exits 2 with one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .api import Resolver
from .app import run
from .commands.check import run_check
from .commands.health import run_health
from .commands.hostsetup import TARGETS, run_host_setup
from .config import (
    LOG_LEVELS,
    Config,
    allowed_networks,
    domain_names,
    existing_paths,
    forward_rules,
    host_addresses,
    host_names,
    http_endpoint,
    http_token,
    listen_endpoints,
    not_negative,
    positive,
    record_lines,
    upstream_endpoints,
    view_ranges,
    worker_count,
)
from .errors import ConfigError
from .observe.logs import LOG_FORMATS

ENV_PREFIX = "DNS_SIDECAR_"
COMMANDS = ("serve", "check", "health", "host-setup")
_NEWLINE_SEPARATED = {"record", "forward"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("local data")
    group.add_argument("--zonefile", action="append", metavar="PATH",
                       help="RFC 1035 zonefile, or a directory whose *.zone files are all loaded "
                            "(watched; repeatable)")
    group.add_argument("--hosts", action="append", metavar="PATH",
                       help="hosts-format file (watched; repeatable)")
    group.add_argument("--record", action="append", metavar="LINE",
                       help="one zonefile line with absolute names, e.g. "
                            "'*.dev.example. 60 IN A 127.0.0.1' (repeatable)")


def _serve_options(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("listening and forwarding")
    net.add_argument("--listen", action="append", metavar="ADDR:PORT",
                     help="UDP and TCP address to serve on (repeatable; default 127.0.0.1:53)")
    net.add_argument("--workers", type=int, metavar="N",
                     help="processes serving the same ports, each with its own copy of the zone and caches "
                          "(default 1; one per core answers the most queries)")
    net.add_argument("--no-fast-path", action="store_true", default=None,
                     help="answer every query on the slow path: no ready replies, packet cache or batch I/O "
                          "(the same answers, more CPU; for telling a fast-path fault from any other)")
    net.add_argument("--upstream", action="append", metavar="ADDR[:PORT]",
                     help="resolver to relay other names to (repeatable; default: the nameservers "
                          "of --resolv-conf)")
    net.add_argument("--resolv-conf", metavar="PATH", help="where to find upstreams (default /etc/resolv.conf)")
    net.add_argument("--forward", action="append", metavar="DOMAIN=ADDR[:PORT][,ADDR...]",
                     help="send DOMAIN and its subdomains to these upstreams instead (repeatable; "
                          "the most specific domain wins)")
    net.add_argument("--timeout", type=float, metavar="SECONDS", help="per-upstream timeout (default 1)")
    net.add_argument("--cache-size", type=int, metavar="N", help="forwarded answers kept (default 10000)")
    net.add_argument("--min-ttl", type=int, metavar="SECONDS",
                     help="keep forwarded answers at least this long (default 0)")
    net.add_argument("--max-ttl", type=int, metavar="SECONDS",
                     help="keep forwarded answers at most this long (default 86400)")
    net.add_argument("--stale-ttl", type=int, metavar="SECONDS",
                     help="serve expired answers this long when no upstream answers (default 86400; "
                          "0 turns serve-stale off)")
    docker = parser.add_argument_group("docker")
    docker.add_argument("--no-docker", action="store_true", default=None,
                        help="do not watch Docker even when a socket is there")
    docker.add_argument("--docker-opt-in", action="store_true", default=None,
                        help="only containers labelled dns-sidecar.enable=true get names")
    docker.add_argument("--domain", action="append", metavar="DOMAIN",
                        help="domain for container names (repeatable; default docker)")
    docker.add_argument("--label-domain", action="append", metavar="SUFFIX",
                        help="containers may also claim names under SUFFIX (repeatable; besides --domain and "
                             "test, example, invalid, internal, home.arpa)")
    docker.add_argument("--host-address", action="append", metavar="ADDR",
                        help="address given for containers to clients outside their networks")
    docker.add_argument("--host-name", action="append", metavar="NAME",
                        help="a name of the host: each network's gateway inside it, --host-address or "
                             "127.0.0.1 outside (repeatable; default host.docker.internal)")
    docker.add_argument("--view", action="append", metavar="NAME=CIDR",
                        help="clients in CIDR get network NAME's answers (repeatable)")
    parser.add_argument("--poll-interval", type=float, metavar="SECONDS",
                        help="how often watched files are also checked by polling (default 2)")
    access = parser.add_argument_group("who may ask")
    access.add_argument("--allow", action="append", metavar="CIDR",
                        help="also serve these clients (default: loopback and the Docker networks and --view "
                             "ranges the sidecar knows; everyone else is REFUSED)")
    access.add_argument("--local-to-any", action="store_true", default=None,
                        help="answer local names to any client (forwarding stays for allowed clients only)")
    access.add_argument("--rate-limit", type=float, metavar="QPS",
                        help="UDP responses per second per client /24 or /56; over it most are dropped and every "
                             "second one slips as TC (default 0: off)")
    watch = parser.add_argument_group("watching it")
    watch.add_argument("--http", metavar="ADDR:PORT",
                       help="serve /healthz, /metrics, /records and a status page here, to the clients DNS "
                            "serves (default off)")
    watch.add_argument("--http-token", metavar="TOKEN",
                       help="also want 'Authorization: Bearer TOKEN' everywhere but /healthz (better set "
                            "through DNS_SIDECAR_HTTP_TOKEN than on the command line)")
    watch.add_argument("--log-format", choices=LOG_FORMATS, help="text lines (default) or one JSON object a line")
    watch.add_argument("--log-queries", action="store_true", default=None, help="log every answered query")


def _health_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", action="append", metavar="ADDR:PORT",
                        help="where the server listens (the first one is asked; default 127.0.0.1:53)")
    parser.add_argument("--http", metavar="ADDR:PORT", help="also require 200 from /healthz there")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="how long to wait (default 2)")


def _host_setup_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", action="append", metavar="ADDR:PORT",
                        help="where the host reaches the sidecar (the first one is used; default 127.0.0.1:53)")
    parser.add_argument("--domain", action="append", metavar="DOMAIN",
                        help="container domain to route to the sidecar (repeatable; default docker)")
    parser.add_argument("--target", action="append", choices=TARGETS,
                        help="which resolver to configure (repeatable; default: the ones found under --root)")
    parser.add_argument("--root", metavar="DIR", help="treat DIR as / (default /)")
    parser.add_argument("--apply", action="store_true", default=None, help="write the files instead of printing them")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dns-sidecar", description="Split-horizon DNS for Docker stacks: local names "
                     "from container labels and zonefiles, everything else relayed upstream.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    serve = commands.add_parser("serve", help="run the DNS server (the default command)")
    _source_options(serve)
    _serve_options(serve)
    check = commands.add_parser("check", help="validate zonefiles, hosts files and --record lines, then exit")
    _source_options(check)
    health = commands.add_parser("health", help="ask the running server one question; exit 0 if it answers")
    _health_options(health)
    host_setup = commands.add_parser("host-setup", help="print (or --apply) the host resolver settings that "
                                     "send only the sidecar's domains to it")
    _source_options(host_setup)
    _host_setup_options(host_setup)
    for sub in (serve, check):
        sub.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    return parser


def _apply_env(parser: argparse.ArgumentParser, args: argparse.Namespace, env: dict[str, str]) -> None:
    """Fill each flag left unset on the command line from its DNS_SIDECAR_* variable."""
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        if getattr(args, action.dest, None) is not None:
            continue
        raw = env.get(ENV_PREFIX + action.dest.upper())
        if raw is None or raw == "":
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            value: object = raw.strip().lower() in ("1", "true", "yes", "on")
        elif isinstance(action, argparse._AppendAction):
            sep = "\n" if action.dest in _NEWLINE_SEPARATED else ","
            value = [v.strip() for v in raw.split(sep) if v.strip()]
        else:
            try:
                value = action.type(raw) if action.type else raw
            except ValueError:
                raise ConfigError(flag, f"bad value {raw!r} (from {ENV_PREFIX + action.dest.upper()})") from None
            if action.choices and value not in action.choices:
                raise ConfigError(flag, f"{raw!r} is not one of {', '.join(action.choices)}")
        setattr(args, action.dest, value)


def to_config(args: argparse.Namespace) -> Config:
    """Validate parsed flags into a `Config`; raises ConfigError naming the flag."""
    def get(name: str, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    return Config(
        listen=listen_endpoints(get("listen", ["127.0.0.1:53"])),
        workers=worker_count(get("workers", 1)),
        fast_path=not get("no_fast_path", False),
        zonefiles=existing_paths("--zonefile", get("zonefile", [])),
        hosts=existing_paths("--hosts", get("hosts", [])),
        records=record_lines(get("record", [])),
        upstreams=upstream_endpoints(get("upstream", [])),
        resolv_conf=existing_paths("--resolv-conf", [args.resolv_conf])[0] if get("resolv_conf")
        else Config.resolv_conf,
        docker=not get("no_docker", False),
        docker_opt_in=bool(get("docker_opt_in", False)),
        domains=domain_names(get("domain", ["docker"])),
        label_domains=domain_names(get("label_domain", []), "--label-domain"),
        host_address=host_addresses(get("host_address", [])),
        host_names=host_names(get("host_name", ["host.docker.internal"])),
        views=view_ranges(get("view", [])),
        allow=allowed_networks(get("allow", [])),
        local_to_any=bool(get("local_to_any", False)),
        rate_limit=not_negative("--rate-limit", get("rate_limit", 0.0)),
        forwards=forward_rules(get("forward", [])),
        timeout=positive("--timeout", get("timeout", 1.0)),
        cache_size=int(positive("--cache-size", get("cache_size", 10_000), int)),
        min_ttl=not_negative("--min-ttl", get("min_ttl", 0)),
        max_ttl=not_negative("--max-ttl", get("max_ttl", 86_400)),
        stale_ttl=not_negative("--stale-ttl", get("stale_ttl", 86_400)),
        poll_interval=positive("--poll-interval", get("poll_interval", 2.0)),
        log_level=get("log_level", "info"),
        log_format=get("log_format", "text"),
        log_queries=bool(get("log_queries", False)),
        http=http_endpoint(get("http")),
        http_token=http_token(get("http_token")),
    )


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None,
         resolvers: Sequence[Resolver] = ()) -> int:
    """The `dns-sidecar` command; `resolvers` are plug-ins placed before the local zone."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(argv)
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    try:
        _apply_env(subparser, args, dict(os.environ) if env is None else env)
        config = to_config(args)
    except ConfigError as exc:
        print(f"dns-sidecar: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return run_check(config)
    if args.command == "health":
        return run_health(config.listen[0], config.http, args.timeout or 2.0)
    if args.command == "host-setup":
        return run_host_setup(config, args.target or [], Path(args.root or "/"), bool(args.apply))
    return run(config, resolvers)
