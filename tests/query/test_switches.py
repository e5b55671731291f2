"""Switches beyond the paper: MGE without ||h||, and the space the diversity step clusters in."""

import numpy as np
import pytest

from raydal.config import ALConfig
from raydal.exceptions import ConfigError, QueryError
from raydal.query import get_strategy
from raydal.query.diversity import cluster_space, gradient_embedding, select_diverse
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
    assert g.shape == (6, 12)
    for i in range(6):
        np.testing.assert_allclose(g[i], np.outer(p[i] - (p[i] >= 0.5), h[i]).ravel())
    # its norm is the MGE uncertainty (the Frobenius norm of the outer product)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), mge_uncertainty(p, h))
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
