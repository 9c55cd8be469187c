"""dns-sidecar holding N other containers' records before it starts: `python3 bench/preloaded.py N [flags]`.

The event-latency bench's stand-in for a big Docker host (ten thousand real containers need more
memory than a bench machine has): the sidecar is the real one, run as `dns-sidecar` runs it,
with its store given N containers' fragments (`inproc.container_fragment`, one per container, as
the Docker source keeps them) before its sources start. Everything else, the real engine's
events included, is as usual; the flags are `dns-sidecar serve`'s."""

from __future__ import annotations

import sys

from inproc import container_fragment

from sidecar import app, cli

FIRST = 100_000  # their names start at c100000.docker., clear of the bench's own c0, c1, ...


class PreloadedSidecar(app.Sidecar):
    count = 0

    async def start(self) -> None:
        self.store.put_many({f"bench:c{i}": container_fragment(i) for i in range(FIRST, FIRST + self.count)})
        await super().start()


def main(argv: list[str]) -> int:
    PreloadedSidecar.count = int(argv[0])
    app.Sidecar = PreloadedSidecar  # what `dns-sidecar serve` runs, from here on
    return cli.main(["serve", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
