"""Resolution: the ordered chain of resolvers, the local zone resolver, the cache and the
forwarder. Everything here takes plain values and returns `Answer`s; transports live in
`sidecar.server`."""
