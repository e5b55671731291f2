"""The registry and every strategy end to end on the tiny pool."""

from __future__ import annotations

import numpy as np
import pytest

from raydal.data.shards import iter_batches, read_split
from raydal.exceptions import ConfigError, QueryError
from raydal.query import QueryStrategy, get_strategy, list_strategies, random_ids, register_strategy, score_pool
from raydal.query import base as base_module

PAPER_NAMES = ["ll", "ll+clustering", "mge", "mge+clustering", "random", "tpd", "tpd+clustering"]


def test_registry_names_and_needs():
    assert list_strategies() == PAPER_NAMES
    assert get_strategy("random").needs == frozenset() and not get_strategy("random").requires_scoring
    assert get_strategy("ll").needs == {"pred_loss"}
    assert get_strategy("ll+clustering").needs == {"pred_loss", "embeddings"}
    assert "prev_probs" in get_strategy("tpd").needs
    assert get_strategy("mge+clustering").candidate_count(b=20, m=3) == 60
    assert get_strategy("mge").candidate_count(b=20, m=3) == 20  # uncertainty only: m = 1
    assert get_strategy("random").candidate_count(b=20, m=3) == 0


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError, match="Unknown query strategy 'badge'. Valid names: ll, ll\\+clustering"):
        get_strategy("badge")


def test_backend_is_validated_at_construction():
    with pytest.raises(ConfigError, match="backend"):
        get_strategy("mge+clustering", backend="cuml")
    assert get_strategy("mge+clustering", backend="torch").backend == "torch"


@pytest.fixture
def scratch_registry():
    saved = dict(base_module._REGISTRY)
    yield
    base_module._REGISTRY.clear()
    base_module._REGISTRY.update(saved)


def test_a_new_strategy_is_one_decorated_class(scratch_registry, model, manifest):
    @register_strategy("confidence")
    class LeastConfidence(QueryStrategy):
        uncertainty = "confidence"

        def score(self, scored, prev_probs=None):
            return -np.abs(scored["probs"] - 0.5).min(axis=1)

    with pytest.raises(ConfigError, match="already registered"):
        register_strategy("confidence")(LeastConfidence)
    strategy = get_strategy("confidence")
    scores = score_pool(model, iter_batches(manifest, "pool", 16), strategy, strategy.candidate_count(5))
    assert len(strategy.select(5, scores=scores)) == 5


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_every_strategy_returns_b_distinct_unlabeled_ids(name, model, manifest):
    all_ids = read_split(manifest, "pool")["id"]
    labeled = set(all_ids[:15].tolist())
    unlabeled = sorted(set(all_ids.tolist()) - labeled)
    strategy = get_strategy(name, backend="torch") if "clustering" in name else get_strategy(name)
    b, m = 6, 3
    prev = None
    if "prev_probs" in strategy.needs:
        # A previous iteration's probabilities for the whole pool.
        first = score_pool(model, iter_batches(manifest, "pool", 16), strategy, strategy.candidate_count(b, m))
        prev = (first.ids, np.clip(first.probs[::-1] * 0.9, 0, 1))
    scores = None
    if strategy.requires_scoring:
        batches = iter_batches(manifest, "pool", 16, exclude=labeled)
        scores = score_pool(model, batches, strategy, strategy.candidate_count(b, m), prev_probs=prev)
    chosen = strategy.select(b, scores=scores, pool_ids=unlabeled, m=m, seed=0)
    assert len(chosen) == b and len(set(chosen)) == b
    assert set(chosen) <= set(unlabeled)
    assert chosen == strategy.select(b, scores=scores, pool_ids=unlabeled, m=m, seed=0)
    if scores is not None and not strategy.clustering:
        np.testing.assert_array_equal(chosen, scores.cand_ids[:b])  # uncertainty only = top b


def test_tpd_first_iteration_selects_at_random(model, manifest):
    strategy = get_strategy("tpd+clustering")
    scores = score_pool(model, iter_batches(manifest, "pool", 16), strategy, 12)
    assert strategy.select(4, scores=scores, seed=5) == random_ids(scores.ids, 4, seed=5)


def test_random_is_seeded_uniform_and_order_free():
    ids = [f"s{i}" for i in range(100)]
    a = get_strategy("random").select(10, pool_ids=ids, seed=1)
    assert len(set(a)) == 10 and set(a) <= set(ids)
    assert a == get_strategy("random").select(10, pool_ids=ids[::-1], seed=1)
    assert a != get_strategy("random").select(10, pool_ids=ids, seed=2)
    assert sorted(get_strategy("random").select(500, pool_ids=ids)) == sorted(ids)
    counts = np.zeros(100)
    for seed in range(400):
        counts[[int(s[1:]) for s in random_ids(ids, 10, seed)]] += 1
    assert counts.min() > 10 and counts.max() < 75  # ~40 expected per id
    with pytest.raises(QueryError, match="duplicate"):
        random_ids(["a", "a", "b"], 1)


def test_select_guards(model, manifest):
    mge = get_strategy("mge+clustering")
    with pytest.raises(QueryError, match="pass scores=score_pool"):
        mge.select(3, pool_ids=["a", "b", "c", "d"])
    few = score_pool(model, iter_batches(manifest, "pool", 16), mge, 4)
    with pytest.raises(QueryError, match="needs the top 12 candidates but the scores keep 4"):
        mge.select(4, scores=few, m=3)
    with pytest.raises(QueryError, match="ranks by 'll' but the scores hold 'mge'"):
        get_strategy("ll").select(2, scores=few)
    with pytest.raises(ConfigError, match="'b' parameter of strategy 'mge\\+clustering' must be an int >= 1"):
        mge.select(0, scores=few)


def near_duplicate_pool(b: int, per_cluster: int, seed: int = 0):
    """A pool of ``b`` well-separated clusters whose ``per_cluster`` most uncertain samples
    are near-duplicates in cluster 0: (ids [N], uncertainty [N], embeddings [N, D], cluster [N])."""
    r = np.random.default_rng(seed)
    centers = r.normal(size=(b, 16)) * 100.0
    cluster = np.repeat(np.arange(b), per_cluster)
    emb = (centers[cluster] + r.normal(size=(len(cluster), 16)) * 0.01).astype(np.float32)
    unc = r.random(len(cluster)) + (cluster == 0) * 10.0  # cluster 0 holds the most uncertain
    perm = r.permutation(len(cluster))
    ids = np.array([f"s{i:04d}" for i in range(len(cluster))])
    return ids, unc[perm], emb[perm], cluster[perm]


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("name", ["ll+clustering", "mge+clustering", "tpd+clustering"])
def test_clustering_strategy_spreads_near_duplicates_over_clusters(name, backend):
    """The registered "+clustering" strategies, from pool scores: not the top b by uncertainty.

    The pool's b most uncertain samples are near-duplicates (one cluster). Scores are
    assembled as the scoring path does, keeping ``candidate_count(b, m)`` candidates,
    and the strategy's own ``select`` must pick one sample per cluster. A strategy
    that clusters with m = 1 or keeps only b candidates returns the top b: all cluster 0.
    """
    from raydal.query import PoolScores, TopKCandidates

    b, m = 4, 5
    ids, unc, emb, cluster = near_duplicate_pool(b, per_cluster=m)
    strategy = get_strategy(name, backend=backend)
    top = TopKCandidates(strategy.candidate_count(b, m))
    top.add(ids, unc, emb)
    probs = np.full((len(ids), 3), 0.5, dtype=np.float32)
    scores = PoolScores.assemble([ids], [probs], [unc], strategy.uncertainty, top)

    top_b = scores.cand_ids[:b].tolist()
    assert {int(cluster[ids.tolist().index(i)]) for i in top_b} == {0}  # the trap: uncertainty alone
    chosen = strategy.select(b, scores=scores, pool_ids=ids, m=m, seed=0)
    assert len(set(chosen)) == b
    assert sorted(int(cluster[ids.tolist().index(i)]) for i in chosen) == list(range(b))
    assert chosen != top_b
    assert chosen[0] == top_b[0]  # each cluster's most uncertain, most uncertain first
    # The same strategy without clustering (its m = 1 ablation) is exactly the top b.
    plain = get_strategy(name.removesuffix("+clustering"))
    assert plain.select(b, scores=scores, pool_ids=ids, m=m, seed=0) == top_b
