"""dns-sidecar: split-horizon DNS for Docker stacks.

The plug-in API: a resolver is any callable taking a `Query` and returning an `Answer` (use
`Found(...)`), a `Forward(...)`, or None to fall through; it may be async. Pass a list of them
to `serve(resolvers=[...])`; they run before the local zone, in order. The server (`Sidecar`,
and `serve` when called) is loaded on first use: importing the API loads no Docker SDK."""

from collections.abc import Sequence

from .api import NXDOMAIN, REFUSED, Answer, Forward, Found, Query, Resolver

__version__ = "0.1.0"
__all__ = ["NXDOMAIN", "REFUSED", "Answer", "Forward", "Found", "Query", "Resolver", "Sidecar", "serve"]


def serve(resolvers: Sequence[Resolver] = (), *flags: str) -> int:
    """The Python entry point: plug-in resolvers plus the command's own flags, e.g.
    `serve([my_resolver], "--listen", "127.0.0.1:5300", "--zonefile", "zones/")`."""
    from .cli import main
    return main(["serve", *flags], resolvers=resolvers)


def __getattr__(name: str) -> object:
    if name == "Sidecar":
        from .app import Sidecar
        return Sidecar
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
