"""The zone's name index: a change copies only the shards it touches, and never the old map."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.zone.shardmap import ShardMap


def test_evolve_shares_every_shard_it_does_not_touch() -> None:
    old = ShardMap({f"c{i}.docker.": i for i in range(10_000)})
    new = old.evolve({"late.docker.": -1}, ["c5.docker."])
    assert new["late.docker."] == -1 and "c5.docker." not in new and len(new) == 10_000
    assert "late.docker." not in old and old["c5.docker."] == 5 and len(old) == 10_000
    shared = sum(a is b for a, b in zip(old._shards, new._shards, strict=True))
    assert shared >= len(old._shards) - 2


def test_a_map_that_grew_fourfold_is_laid_out_anew() -> None:
    small = ShardMap({f"n{i}.": i for i in range(16)})
    grown = small.evolve({f"m{i}.": i for i in range(100)})
    assert len(grown._shards) > len(small._shards)
    assert dict(grown) == {**{f"n{i}.": i for i in range(16)}, **{f"m{i}.": i for i in range(100)}}


@given(st.dictionaries(st.text(max_size=3), st.integers(), max_size=40),
       st.lists(st.tuples(st.dictionaries(st.text(max_size=3), st.integers(), max_size=30),
                          st.lists(st.text(max_size=3), max_size=30)), max_size=8))
def test_evolving_gives_what_a_dict_would(start, steps) -> None:
    expected, current = dict(start), ShardMap(start)
    for put, drop in steps:
        for key in drop:
            expected.pop(key, None)
        expected.update(put)
        current = current.evolve(put, drop)
        assert dict(current) == expected and len(current) == len(expected)
        assert all(current.get(key) == value and key in current for key, value in expected.items())


def test_a_map_made_in_one_piece_is_fitted_into_shards_with_the_same_values() -> None:
    items = {f"h{i}.big.test.": object() for i in range(5_000)}
    whole = ShardMap.of_shards([dict(items)])
    fitted = whole.fitted()
    assert len(fitted._shards) > 1 and fitted.fitted() is fitted
    assert all(fitted[key] is value for key, value in items.items()) and len(fitted) == len(items)
