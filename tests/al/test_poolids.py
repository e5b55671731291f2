"""Whole-pool bookkeeping by indices: packed ids keep str order, lookups by binary search, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raydal.al.poolids import member_mask, pack_ids, positions, prev_probs_digest, sorted_ids, unpack_ids
from raydal.al.state import StateStore
from raydal.exceptions import QueryError
from raydal.query.base import random_ids

_ID = st.text(alphabet=st.sampled_from(list("ab_-09Zé€☃")), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ID, min_size=0, max_size=40, unique=True), st.lists(_ID, max_size=10))
def test_packed_pool_finds_what_a_set_finds(pool_ids, probe):
    pool = sorted_ids(pool_ids)
    assert pool.tolist() == sorted(pool_ids)
    packed = pack_ids(pool)
    assert unpack_ids(packed).tolist() == pool.tolist()  # exact round trip, non-ASCII too
    assert np.all(packed[1:] > packed[:-1])  # the packed bytes keep the str order
    in_pool = set(pool_ids)
    for table in (pool, packed):
        found = [str(pool[p]) if p >= 0 else None for p in positions(table, probe)]
        assert found == [i if i in in_pool else None for i in probe]
        assert set(pool[member_mask(table, probe)].tolist()) == set(probe) & in_pool


def test_sorted_ids_names_a_duplicate():
    with pytest.raises(QueryError, match="duplicate ids.*'b'"):
        sorted_ids(["c", "b", "a", "b"])


def test_probs_files_round_trip_exactly(tmp_path):
    store = StateStore(str(tmp_path))
    ids = np.array(["x2", "é1", "a3"])
    probs = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    rel = store.save_probs("iter-0000.npz", ids, probs)
    got_ids, got_probs = store.load_probs(rel)
    assert got_ids.tolist() == ids.tolist() and got_probs.dtype == np.float32
    np.testing.assert_array_equal(got_probs, probs)
    packed, _ = store.load_probs(rel, packed=True)
    assert packed.dtype.kind == "S" and unpack_ids(packed).tolist() == ids.tolist()


def test_the_digest_sees_any_change_and_packing_does_not_change_it():
    ids = np.array(["a", "b", "c"])
    probs = np.ones((3, 2), np.float32)
    d = prev_probs_digest((ids, probs))
    assert prev_probs_digest((pack_ids(ids), probs.copy())) == d
    changed = probs.copy()
    changed[1, 1] = 0.5
    assert prev_probs_digest((ids, changed)) != d
    assert prev_probs_digest((np.array(["a", "b", "d"]), probs)) != d


def test_random_draw_from_sorted_ids_equals_the_draw_from_any_order():
    ids = np.array([f"s{i:05d}" for i in range(1000)])
    shuffled = np.random.default_rng(3).permutation(ids)
    assert random_ids(ids, 50, seed=7) == random_ids(shuffled, 50, seed=7)
