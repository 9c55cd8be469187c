"""A plug-in resolver: run `python3 examples/plugin.py --listen 127.0.0.1:5300`.

Each resolver gets a `Query` and returns `Found(...)` (answer), `Forward(...)` (ask another
resolver), or None (let the next resolver, then the local zone, then the upstreams decide).
They run in the order given, before the local zone. Any `dns-sidecar serve` flag works here."""

import sys

from sidecar import Forward, Found, Query, serve


def whoami(query: Query):
    """`whoami.test` answers with the asking client's own address, as TXT."""
    if query.key == "whoami.test." and query.type_name == "TXT":
        return Found(f'{query.name} 0 IN TXT "{query.client}"')
    return None


def corporate(query: Query):
    """Names under corp.test go to the resolver given in CORP_RESOLVER (e.g. a VPN's)."""
    if query.key.endswith(".corp.test.") and CORP_RESOLVER:
        return Forward(upstreams=(CORP_RESOLVER,))
    return None


CORP_RESOLVER = ""

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--corp-resolver" in args:
        at = args.index("--corp-resolver")
        CORP_RESOLVER = args[at + 1]
        del args[at : at + 2]
    sys.exit(serve([whoami, corporate], *args))
