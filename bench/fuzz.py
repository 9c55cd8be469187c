"""Hostile datagrams against a running dns-sidecar, seeded: `python3 bench/fuzz.py [--packets 1000000]
[--seed 1]`, and the junk flood's memory row (`junk_flood`, used by bench/run.py).

The fuzz run starts an upstream dnsmasq on loopback (never forwarding) and a sidecar serving the
example zonefiles and forwarding to it, then sends `--packets` datagrams over UDP: valid queries
with bytes changed, cut or grown, header counts that lie, compression pointers anywhere, and
random bytes. Every `SYNC_EVERY` datagrams it asks one real question and waits for the answer,
so the sidecar keeps up (a flood that only overflows the socket's buffer tests nothing). At the
end it reports what was sent, how many real questions went unanswered, whether the process is
alive, the tracebacks and errors in its log, and its resident memory. Needs dnsmasq on PATH."""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from daemons import HOST, Server, ask, start_dnsmasq, start_sidecar

HERE = Path(__file__).resolve().parent
SYNC_EVERY = 500
EXAMPLES = HERE.parent / "examples"
PROBE = "web.dev.test."  # a name the example zonefile answers
FORWARDED = ("www.fwd.test", "x.y.fwd.test", "fwd.test")


def query(name: str, qtype: int = 1, edns: bool = False) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split("."))
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00" if edns else b""
    return struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 1 if edns else 0) + labels + b"\x00" + \
        struct.pack("!HH", qtype, 1) + opt


def hostile(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One malformed (or merely odd) datagram."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 700))
    data = bytearray(rng.choice(seeds))
    if kind == 1:  # bytes changed
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:  # cut short
        del data[rng.randrange(len(data)) :]
    elif kind == 3:  # header counts that lie
        struct.pack_into("!HHHH", data, 4, *(rng.choice((0, 1, 2, 255, 65535)) for _ in range(4)))
    elif kind == 4:  # a compression pointer somewhere, maybe to itself
        at = rng.randrange(12, len(data) - 1)
        data[at : at + 2] = struct.pack("!H", 0xC000 | rng.choice((at, 12, rng.randrange(0x3FFF))))
    else:  # grown: records or junk after the question
        data += rng.randbytes(rng.randrange(1, 400))
        struct.pack_into("!H", data, 10, rng.randrange(4))
    return bytes(data)


def flood(server: Server, datagrams, sync_every: int = SYNC_EVERY) -> dict:
    """Send `datagrams` to `server`, asking `PROBE` every `sync_every`: what was sent, how many
    of those real questions went unanswered."""
    sent = unanswered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # replies are not read: keep few
        for data in datagrams:
            sock.sendto(data, (HOST, server.port))
            sent += 1
            if sent % sync_every == 0 and ask(server.port, PROBE, timeout=2.0) is None:
                unanswered += 1
    return {"sent": sent, "probes": sent // sync_every, "probes_unanswered": unanswered}


def log_problems(server: Server) -> dict:
    text = server.log.read_text(errors="replace")
    return {"tracebacks": text.count("Traceback"), "errors": text.count(" ERROR ")}


def junk_flood(workdir: Path, upstream_port: int, datagrams: int = 100_000, size: int = 4000, seed: int = 1) -> dict:
    """Resident memory of a sidecar before and after `datagrams` distinct `size`-byte junk
    datagrams (random bytes, and valid questions with junk after them): what junk costs."""
    server = start_sidecar(["--zonefile", str(EXAMPLES), "--upstream", f"{HOST}:{upstream_port}"], workdir, PROBE,
                           name="sidecar-junk")
    try:
        rng = random.Random(seed)
        before = server.rss_mb()

        def junk():
            for i in range(datagrams):
                noise = rng.randbytes(size)
                yield noise if i % 2 else (query(f"j{i}.dev.test") + noise)[:size]

        sent = flood(server, junk())
        after = server.rss_mb()
        return {"datagrams": sent["sent"], "size": size, "rss_before_mb": round(before, 1),
                "rss_after_mb": round(after, 1), "added_mb": round(after - before, 1),
                "probes_unanswered": sent["probes_unanswered"], **log_problems(server)}
    finally:
        server.stop()


def fuzz(args: argparse.Namespace, workdir: Path) -> dict:
    conf = workdir / "upstream.conf"
    conf.write_text("address=/fwd.test/192.0.2.44\n")
    upstream = start_dnsmasq("upstream", conf, workdir, "www.fwd.test.")
    try:
        server = start_sidecar(["--zonefile", str(EXAMPLES), "--upstream", f"{HOST}:{upstream.port}"], workdir, PROBE,
                               name="sidecar-fuzz")
        try:
            rng = random.Random(args.seed)
            seeds = [query(name, qtype, edns) for name in (PROBE, *FORWARDED) for qtype in (1, 28, 15, 255)
                     for edns in (False, True)]
            started = time.monotonic()
            result = flood(server, (hostile(rng, seeds) for _ in range(args.packets)))
            seconds = time.monotonic() - started
            alive = server.proc.poll() is None
            still_answers = ask(server.port, PROBE, timeout=2.0) is not None and \
                ask(server.port, "www.fwd.test", timeout=2.0) is not None
            return {"seed": args.seed, **result, "seconds": round(seconds, 1), "alive": alive,
                    "still_answers": still_answers, "rss_mb": round(server.rss_mb(), 1) if alive else None,
                    **log_problems(server), "log": str(server.log) if args.keep else None}
        finally:
            server.stop()
    finally:
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1_000_000, help="hostile datagrams to send")
    parser.add_argument("--seed", type=int, default=1, help="the random generator's seed (same seed, same packets)")
    parser.add_argument("--keep", action="store_true", help="keep the sidecar's log (its path is printed)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="dns-sidecar-fuzz-"))
    result = fuzz(args, workdir)
    print(json.dumps(result))
    clean = result["alive"] and result["still_answers"] and not result["tracebacks"] and not result["errors"]
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
