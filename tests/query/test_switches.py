"""Switches beyond the paper: MGE without ||h||, and the space the diversity step clusters in."""

import numpy as np
import pytest

from raydal.config import ALConfig
from raydal.exceptions import ConfigError, QueryError
from raydal.query import get_strategy
from raydal.query.diversity import CLUSTER_FEATURES, cluster_space, gradient_embedding, select_diverse
from raydal.query.mge import mge_uncertainty


def _data(n=40, c=5, d=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c)), rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=(n, 1))


def test_mge_without_feature_norm_ranks_by_prob_distance():
    p, h = _data()
    off = mge_uncertainty(p, h, feature_norm=False)
    dist = np.linalg.norm(p - (p >= 0.5), axis=1)
    np.testing.assert_allclose(off, dist)
    assert np.array_equal(np.argsort(-off, kind="stable"), np.argsort(-dist, kind="stable"))
    on = mge_uncertainty(p, h)
    assert not np.array_equal(np.argsort(-on), np.argsort(-off))  # ||h|| varies 100x: the ranking changes
    strategy = get_strategy("mge", mge_feature_norm=False)
    np.testing.assert_allclose(strategy.score({"probs": p, "embeddings": h}), dist)
    np.testing.assert_array_equal(get_strategy("mge").score({"probs": p, "embeddings": h}), on)


def test_normalized_features_have_unit_norm():
    _, h = _data()
    h[3] = 0.0  # a zero row stays zero instead of dividing by zero
    z = cluster_space(h, "normalized")
    norms = np.linalg.norm(z, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 1.0)
    assert norms[3] == 0.0
    assert cluster_space(h, "penultimate") is h


def test_gradient_embedding_is_the_outer_product():
    p, h = _data(n=6, c=3, d=4)
    g = gradient_embedding(p, h)
    assert g.shape == (6, 12) and g.dtype == np.float32  # float32: what k-means clusters, half the memory
    for i in range(6):
        np.testing.assert_allclose(g[i], np.outer(p[i] - (p[i] >= 0.5), h[i]).ravel(), rtol=1e-6)
    # its norm is the MGE uncertainty (the Frobenius norm of the outer product)
    np.testing.assert_allclose(np.linalg.norm(g.astype(np.float64), axis=1), mge_uncertainty(p, h), rtol=1e-6)
    np.testing.assert_array_equal(cluster_space(h, "gradient", probs=p), g)
    with pytest.raises(QueryError, match="probabilities"):
        cluster_space(h, "gradient")


def test_default_space_is_bit_identical_and_normalized_clusters_the_unit_rows():
    p, h = _data(n=60)
    unc = mge_uncertainty(p, h)
    base = select_diverse(unc, h, 6, 3, seed=1, backend="sklearn")
    np.testing.assert_array_equal(select_diverse(unc, h, 6, 3, seed=1, backend="sklearn", space="penultimate"), base)
    unit = cluster_space(h, "normalized")
    np.testing.assert_array_equal(
        select_diverse(unc, h, 6, 3, seed=1, backend="sklearn", space="normalized"),
        select_diverse(unc, unit, 6, 3, seed=1, backend="sklearn"),
    )


def test_config_defaults_are_the_papers_and_bad_space_is_refused():
    cfg = ALConfig()
    assert cfg.mge_feature_norm is True and cfg.cluster_features == "penultimate"
    s = get_strategy("mge+clustering")
    assert s.mge_feature_norm is True and s.cluster_features == "penultimate"
    with pytest.raises(ConfigError, match="cluster_features"):
        get_strategy("mge+clustering", cluster_features="gradients")
    # the config offers exactly the spaces the diversity step knows
    assert tuple(ALConfig.__dataclass_fields__["cluster_features"].metadata["choices"]) == CLUSTER_FEATURES
    assert get_strategy("mge+clustering", cluster_features="gradient").cluster_features == "gradient"


# Six candidates with a known answer (b=2, m=3): h splits them {0,1,2} | {3,4,5} (the second coordinate's
# sign), the class they are uncertain about splits them {0,1,3} | {2,4,5}. In the gradient space
# (p - y_hat) h^T the class split is 0.45*sqrt(2)*|h| ~ 0.65 apart, the h split only 0.45*0.4 = 0.18.
_H = np.array([[1, 0.2], [1, 0.2], [1, 0.2], [1, -0.2], [1, -0.2], [1, -0.2]])
_R = np.array([[0.45, 0], [0.44, 0], [0, 0.43], [0.42, 0], [0, 0.41], [0, 0.40]])  # p - y_hat; p < 0.5: y_hat = 0


def _known_scores(extra_rows: int = 4):
    """PoolScores of a pool: the six candidates above plus ``extra_rows`` certain rows, ids sorted."""
    from raydal.query.candidates import PoolScores

    probs = np.vstack([_R, np.zeros((extra_rows, 2))]).astype(np.float32)
    feats = np.vstack([_H, np.ones((extra_rows, 2))]).astype(np.float32)
    unc = mge_uncertainty(probs, feats)
    ids = np.array([f"id{i:02d}" for i in range(len(probs))])
    order = np.argsort(-unc, kind="stable")[:6]
    return PoolScores(
        ids=ids,
        probs=probs,
        uncertainty_name="mge",
        uncertainty=unc,
        cand_ids=ids[order],
        cand_uncertainty=unc[order],
        cand_embeddings=feats[order],
    )


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_gradient_space_clusters_by_the_uncertain_class_where_penultimate_clusters_by_h(backend):
    unc = mge_uncertainty(_R, _H)
    assert np.array_equal(np.argsort(-unc), np.arange(6))  # candidates 0..5, most uncertain first
    for seed in range(3):
        pen = select_diverse(unc, _H, 2, 3, seed=seed, backend=backend)
        grad = select_diverse(unc, _H, 2, 3, seed=seed, backend=backend, space="gradient", probs=_R)
        assert sorted(pen.tolist()) == [0, 3]  # each h group's most uncertain
        assert sorted(grad.tolist()) == [0, 2]  # each uncertain class's most uncertain
    scores = _known_scores()
    np.testing.assert_array_equal(scores.candidate_probs(), _R.astype(np.float32))
    assert get_strategy("mge+clustering", backend=backend).select(2, scores=scores, m=3) == ["id00", "id03"]
    strategy = get_strategy("mge+clustering", backend=backend, cluster_features="gradient")
    assert strategy.select(2, scores=scores, m=3) == ["id00", "id02"]


def test_gradient_space_is_the_penultimate_space_of_the_gradient_embeddings():
    p, h = _data(n=60)
    unc = mge_uncertainty(p, h)
    got = select_diverse(unc, h, 6, 3, seed=2, backend="sklearn", space="gradient", probs=p)
    want = select_diverse(unc, gradient_embedding(p, h), 6, 3, seed=2, backend="sklearn")
    np.testing.assert_array_equal(got, want)
    with pytest.raises(QueryError, match="probabilities"):
        select_diverse(unc, h, 6, 3, space="gradient")
    with pytest.raises(QueryError, match="probs of shape"):
        select_diverse(unc, h, 6, 3, space="gradient", probs=p[:5])
    with pytest.raises(ConfigError, match="space"):
        select_diverse(unc, h, 6, 3, space="grad")


def test_in_process_scoring_records_feature_norms_and_selects_in_the_gradient_space(manifest, model):
    """``score_pool`` keeps ||h|| of every pool row (the candidates' equal their embeddings' norms) and a
    strategy with ``cluster_features=gradient`` clusters the gradient embeddings of the candidates."""
    from raydal.data.shards import iter_batches
    from raydal.query import score_pool
    from raydal.query.candidates import PoolScores

    strategy = get_strategy("mge+clustering", backend="torch", cluster_features="gradient")
    scores = score_pool(model, iter_batches(manifest, "pool", 16), strategy, strategy.candidate_count(4, 3))
    assert scores.feature_norm.shape == scores.ids.shape and scores.feature_norm.dtype == np.float32
    rows = np.searchsorted(scores.ids, scores.cand_ids)
    np.testing.assert_allclose(scores.feature_norm[rows], np.linalg.norm(scores.cand_embeddings, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(scores.candidate_probs(), scores.probs[rows])
    want = select_diverse(
        scores.cand_uncertainty,
        gradient_embedding(scores.candidate_probs(), scores.cand_embeddings),
        4,
        3,
        seed=1,
        backend="torch",
    )
    assert strategy.select(4, scores=scores, m=3, seed=1) == scores.cand_ids[want].tolist()  # most uncertain first
    broken = PoolScores(**{**vars(scores), "cand_ids": np.array(["nope"] * len(scores.cand_ids))})
    with pytest.raises(QueryError, match="not among the scored ids"):
        broken.candidate_probs()
