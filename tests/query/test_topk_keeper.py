"""The threshold-based top-K keeper equals a full sort by (uncertainty desc, id asc), whatever the blocks.

Property tests (hypothesis) against ``rank_desc`` over everything offered: ties
(few distinct uncertainties), blocks of any size and order, k above and below
the number of rows, and ``admits`` never missing a row of the final top-K.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from raydal.query.candidates import TopKCandidates, top_k_rows
from raydal.query.ranking import rank_desc


@st.composite
def pools(draw):
    n = draw(st.integers(0, 120))
    levels = draw(st.integers(1, 6))  # few distinct values: many exact ties at the threshold
    unc = np.array(draw(st.lists(st.integers(0, levels), min_size=n, max_size=n)), dtype=np.float64) / levels
    ids = np.array([f"s{i:04d}" for i in draw(st.permutations(range(n)))], dtype=str)
    k = draw(st.integers(0, 40))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    return ids, unc, k, cuts


def _blocks(n, cuts):
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


@settings(max_examples=300, deadline=None)
@given(pools())
def test_keeper_equals_a_full_sort(case):
    ids, unc, k, cuts = case
    emb = np.arange(len(ids) * 3, dtype=np.float32).reshape(-1, 3)
    top = TopKCandidates(k)
    for blk in _blocks(len(ids), cuts):
        top.add(ids[blk], unc[blk], emb[blk])
    want = rank_desc(unc, ids)[:k]
    got_ids, got_unc, got_emb = top.result()
    np.testing.assert_array_equal(got_ids, ids[want])
    np.testing.assert_array_equal(got_unc, unc[want])
    if k and len(ids):
        np.testing.assert_array_equal(got_emb, emb[want])
    assert len(top) == min(k, len(ids))


@settings(max_examples=300, deadline=None)
@given(pools())
def test_admits_keeps_every_row_of_the_final_top_k_and_only_possible_ones(case):
    ids, unc, k, cuts = case
    seen = TopKCandidates(k)
    admitted: list[str] = []
    for blk in _blocks(len(ids), cuts):
        mask = seen.admits(ids[blk], unc[blk])
        # exactly the block's rows in the top-k of everything seen so far
        upto = np.arange(blk.stop)
        best = set(ids[upto][rank_desc(unc[upto], ids[upto])[:k]].tolist())
        assert set(ids[blk][mask].tolist()) == best & set(ids[blk].tolist())
        admitted += ids[blk][mask].tolist()
        seen.add(ids[blk], unc[blk])
    assert set(ids[rank_desc(unc, ids)[:k]].tolist()) <= set(admitted)


@settings(max_examples=200, deadline=None)
@given(pools())
def test_top_k_rows_is_the_head_of_rank_desc(case):
    ids, unc, k, _ = case
    assert sorted(top_k_rows(unc, ids, k).tolist()) == sorted(rank_desc(unc, ids)[:k].tolist())


def test_rows_below_the_threshold_are_never_buffered():
    top = TopKCandidates(4)
    top.add(np.array(["a", "b", "c", "d", "e"]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]))
    len(top)  # merges: the threshold is (0.6, "d")
    top.add(np.array(["f", "g", "0"]), np.array([0.1, 0.6, 0.6]))  # f below, g ties after "d", "0" before it
    assert top._rows == 5  # only "0" was buffered
    assert top.result()[0].tolist() == ["a", "b", "c", "0"]
