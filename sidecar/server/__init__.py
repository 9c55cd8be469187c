"""Transports: asyncio UDP and TCP listeners around one `QueryHandler`."""
