"""An immutable mapping that a change copies only in part: the zone's name index.

Keys are spread over about sqrt(n) plain dicts by hash. `evolve` returns a new map that shares
every shard the change does not touch, so changing k keys copies about k * sqrt(n) slots instead
of all n, and a reader holding the old map sees it exactly as it was. A lookup is one hash, one
tuple index and one dict lookup."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")


def _bits(size: int) -> int:
    """Shard-count exponent for `size` keys: 2**bits shards of about as many keys each."""
    return size.bit_length() // 2


class ShardMap(Mapping[str, V], Generic[V]):
    __slots__ = ("_len", "_mask", "_shards")

    def __init__(self, items: Mapping[str, V] | None = None, bits: int | None = None) -> None:
        items = items or {}
        shards: list[dict[str, V]] = [{} for _ in range(1 << (_bits(len(items)) if bits is None else bits))]
        mask = len(shards) - 1
        for key, value in items.items():
            shards[hash(key) & mask][key] = value
        self._shards: tuple[dict[str, V], ...] = tuple(shards)
        self._mask = mask
        self._len = len(items)

    @classmethod
    def of_shards(cls, shards: list[dict[str, V]]) -> ShardMap[V]:
        """A map made of `shards`, a power of two of them, key `k` in shard `hash(k) & (len - 1)`
        (one dict is a map of one shard); they must not change afterwards."""
        made = cls.__new__(cls)
        made._shards, made._mask, made._len = tuple(shards), len(shards) - 1, sum(map(len, shards))
        return made

    def fitted(self) -> ShardMap[V]:
        """The same keys and values in as many shards as their number suits: a map made in one
        piece, laid out for `evolve`."""
        if _bits(self._len) == self._mask.bit_length():
            return self
        if len(self._shards) == 1:
            return ShardMap(self._shards[0])
        return ShardMap({key: value for shard in self._shards for key, value in shard.items()})

    def get(self, key: str, default: V | None = None) -> V | None:  # type: ignore[override]
        return self._shards[hash(key) & self._mask].get(key, default)

    def __getitem__(self, key: str) -> V:
        return self._shards[hash(key) & self._mask][key]

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) & self._mask]

    def __iter__(self) -> Iterator[str]:
        for shard in self._shards:
            yield from shard

    def __len__(self) -> int:
        return self._len

    def evolve(self, put: Mapping[str, V], drop: Iterable[str] = ()) -> ShardMap[V]:
        """A new map with `put` set and `drop` removed; untouched shards are shared. When the size
        has moved far from what the shard count suits, the whole map is laid out anew."""
        mask, shards = self._mask, list(self._shards)
        copied: set[int] = set()
        size = self._len

        def writable(key: str) -> dict[str, V]:
            index = hash(key) & mask
            if index not in copied:
                shards[index] = dict(shards[index])
                copied.add(index)
            return shards[index]

        for key in drop:
            shard = writable(key)
            if key in shard:
                del shard[key]
                size -= 1
        for key, value in put.items():
            shard = writable(key)
            size += key not in shard
            shard[key] = value
        wanted = _bits(size)
        if wanted > mask.bit_length() or wanted < mask.bit_length() - 1:
            return ShardMap({key: value for shard in shards for key, value in shard.items()}, wanted)
        return ShardMap.of_shards(shards)
