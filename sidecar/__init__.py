"""dns-sidecar: split-horizon DNS for Docker stacks.

The plug-in API: a resolver is any callable taking a `Query` and returning an `Answer` (use
`Found(...)`), a `Forward(...)`, or None to fall through; it may be async. Pass a list of them
to `serve(resolvers=[...])`; they run before the local zone, in order."""

__version__ = "0.1.0"

from .api import NXDOMAIN, REFUSED, Answer, Forward, Found, Query, Resolver
from .app import Sidecar
from .cli import serve

__all__ = ["NXDOMAIN", "REFUSED", "Answer", "Forward", "Found", "Query", "Resolver", "Sidecar", "serve"]
