"""select_diverse: the two-step query on inputs with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from raydal.exceptions import ConfigError, QueryError
from raydal.query import select_diverse

BACKENDS = ["faiss", "torch"]


def blobs(n_clusters: int, per_cluster: int, dim: int = 16, seed: int = 0):
    """Well-separated clusters; uncertainty is random, so each cluster's maximum is known."""
    r = np.random.default_rng(seed)
    centers = r.normal(size=(n_clusters, dim)) * 100.0
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    feats = (centers[labels] + r.normal(size=(len(labels), dim))).astype(np.float32)
    unc = r.random(len(labels))
    perm = r.permutation(len(labels))
    return unc[perm], feats[perm], labels[perm]


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_pick_per_cluster_and_it_is_the_clusters_most_uncertain(backend):
    b = 8
    unc, feats, labels = blobs(n_clusters=b, per_cluster=30)
    # m*b = 240 = every sample, so the candidates cover every cluster.
    picks = select_diverse(unc, feats, b=b, m=30, seed=0, backend=backend)
    assert len(picks) == b and len(set(picks.tolist())) == b
    assert sorted(labels[picks].tolist()) == list(range(b))
    for i in picks:
        assert unc[i] == unc[labels == labels[i]].max()
    # Most uncertain first.
    assert np.all(np.diff(unc[picks]) <= 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clustering_beats_uncertainty_only_on_diversity(backend):
    # Cluster 0 holds the 20 most uncertain samples: uncertainty-only picks all from it.
    b = 4
    unc, feats, labels = blobs(n_clusters=b, per_cluster=20, seed=1)
    unc = unc + (labels == 0) * 10.0
    top_only = select_diverse(unc, feats, b=b, m=1)
    assert set(labels[top_only].tolist()) == {0}
    diverse = select_diverse(unc, feats, b=b, m=20, seed=0, backend=backend)
    assert sorted(labels[diverse].tolist()) == list(range(b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_m_times_b_most_uncertain_are_candidates(backend):
    r = np.random.default_rng(2)
    unc = r.random(200)
    feats = r.normal(size=(200, 8)).astype(np.float32)
    picks = select_diverse(unc, feats, b=5, m=3, seed=0, backend=backend)
    top15 = set(np.argsort(-unc)[:15].tolist())
    assert set(picks.tolist()) <= top15 and len(set(picks.tolist())) == 5
    assert picks[0] == int(np.argmax(unc))  # the most uncertain is always its cluster's best


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_result_within_backend(backend):
    r = np.random.default_rng(3)
    unc = r.random(300)
    feats = r.normal(size=(300, 32)).astype(np.float32)
    a = select_diverse(unc, feats, b=20, m=4, seed=7, backend=backend)
    b_ = select_diverse(unc, feats, b=20, m=4, seed=7, backend=backend)
    np.testing.assert_array_equal(a, b_)


def test_small_pools():
    unc = np.array([0.1, 0.9, 0.5])
    feats = np.eye(3, dtype=np.float32)
    # N <= b: everything, most uncertain first.
    np.testing.assert_array_equal(select_diverse(unc, feats, b=5, m=3), [1, 2, 0])
    np.testing.assert_array_equal(select_diverse(unc, feats, b=3, m=3), [1, 2, 0])
    # b < N < m*b: all N are clustered into b clusters.
    picks = select_diverse(unc, feats, b=2, m=3, seed=0, backend="torch")
    assert len(set(picks.tolist())) == 2 and picks[0] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_features_still_give_exactly_b(backend):
    # 30 candidates but only 3 distinct points: k-means cannot make 10 non-empty clusters.
    feats = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
    unc = np.linspace(1.0, 0.0, 30)
    picks = select_diverse(unc, feats, b=10, m=3, seed=0, backend=backend)
    assert len(picks) == 10 and len(set(picks.tolist())) == 10
    # The three distinct points' best members are among the picks.
    assert {0, 10, 20} <= set(picks.tolist())


def test_ties_break_by_lower_index():
    unc = np.array([0.5, 0.7, 0.7, 0.5, 0.7])
    feats = np.zeros((5, 2), dtype=np.float32)
    np.testing.assert_array_equal(select_diverse(unc, feats, b=3, m=1), [1, 2, 4])
    np.testing.assert_array_equal(select_diverse(unc, feats, b=5, m=1), [1, 2, 4, 0, 3])


def test_bad_inputs():
    feats = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(QueryError, match="non-finite.*index 1"):
        select_diverse(np.array([0.1, np.nan, 0.3]), feats, b=1, m=2)
    with pytest.raises(QueryError, match="non-finite"):
        select_diverse(np.array([0.1, 0.2, 0.3]), np.array([[0, 0], [np.inf, 0], [1, 1]], np.float32), b=1, m=3)
    with pytest.raises(QueryError, match=r"\[N=3, D\]"):
        select_diverse(np.array([0.1, 0.2, 0.3]), np.zeros((4, 2)), b=1, m=1)
    with pytest.raises(ConfigError, match="'b' parameter .* int >= 1. Got 0"):
        select_diverse(np.array([0.1, 0.2, 0.3]), feats, b=0, m=1)
    with pytest.raises(ConfigError, match="'m' parameter"):
        select_diverse(np.array([0.1, 0.2, 0.3]), feats, b=1, m=1.5)
    with pytest.raises(ConfigError, match="backend"):
        select_diverse(np.arange(6.0), np.zeros((6, 2)), b=2, m=3, backend="cuml")


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    unc = torch.tensor([0.1, 0.9, 0.5, 0.3], dtype=torch.bfloat16)
    feats = torch.eye(4)
    picks = select_diverse(unc, feats, b=2, m=1)
    np.testing.assert_array_equal(picks, [1, 2])
