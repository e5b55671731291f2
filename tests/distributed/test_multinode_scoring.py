"""Scoring on a 2-node Ray cluster gives exactly the in-process candidates and selection."""

from __future__ import annotations

import re

import numpy as np
import pytest
from score_reference import assert_identical, in_process

pytestmark = pytest.mark.ray


def _nodes_used(lines):
    (last,) = [line for line in lines if "actor(s) on" in line]
    return int(re.search(r"on (\d+) node", last).group(1))


@pytest.mark.parametrize("actors", [4, 2, 1])  # largest first: the smaller runs reuse the warm actors
def test_actors_over_two_nodes_give_the_in_process_candidates_and_selection(
    ray_multinode, scoring_setup, tiny_shards, actors
):
    from raydal.distributed.score import score_pool_ray
    from raydal.query import get_strategy

    manifest, model, ckpt, labeled = scoring_setup
    strategy = get_strategy("mge+clustering", backend="torch")
    k = strategy.candidate_count(b=4, m=3)
    lines: list[str] = []
    got = score_pool_ray(
        ckpt, tiny_shards, labeled, strategy, k, concurrency=actors, batch_size=8, progress=lines.append
    )
    want = in_process(manifest, model, strategy, k, labeled, batch_size=8)
    assert len(got.ids) == manifest.splits["pool"]["count"] - len(labeled) and len(got.cand_ids) == k
    assert_identical(got, want)
    assert strategy.select(4, scores=got, m=3, seed=0) == strategy.select(4, scores=want, m=3, seed=0)
    # Placement is soft node affinity (an actor on a lost node restarts elsewhere, issue 11), so the
    # round-robin spread is a preference Ray may override under load: the results above must be exact
    # wherever the actors ran; that they ran somewhere is checked here.
    assert 1 <= _nodes_used(lines) <= min(actors, 2)
    assert any(f"{len(got.ids)}/{len(got.ids)} rows" in line for line in lines)


@pytest.mark.parametrize("name", ["ll+clustering", "tpd+clustering"])
def test_ll_and_tpd_on_two_nodes_match_in_process(ray_multinode, scoring_setup, tiny_shards, name):
    from raydal.distributed.score import score_pool_ray
    from raydal.query import get_strategy

    manifest, model, ckpt, labeled = scoring_setup
    strategy = get_strategy(name, backend="torch")
    k = strategy.candidate_count(b=5, m=2)
    prev = None
    if name.startswith("tpd"):
        first = in_process(manifest, model, strategy, k, labeled, 8)
        prev = (first.ids, np.clip(first.probs[::-1] + 0.1, 0, 1))  # a "previous model" that disagrees
    got = score_pool_ray(ckpt, tiny_shards, labeled, strategy, k, prev, concurrency=2, batch_size=8)
    want = in_process(manifest, model, strategy, k, labeled, 8, prev)
    assert len(want.cand_ids) == k
    assert_identical(got, want)
    assert strategy.select(5, scores=got, m=2, seed=1) == strategy.select(5, scores=want, m=2, seed=1)
