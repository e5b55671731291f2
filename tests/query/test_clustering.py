"""k-means backends: agreement on easy data, determinism, k-means++ seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raydal.exceptions import ConfigError, QueryError
from raydal.query.clustering import kmeans, kmeans_plus_plus, resolve_backend


def separated(k: int = 5, per: int = 40, dim: int = 8, seed: int = 0):
    r = np.random.default_rng(seed)
    centers = r.normal(size=(k, dim)) * 50
    truth = np.repeat(np.arange(k), per)
    return (centers[truth] + r.normal(size=(len(truth), dim))).astype(np.float32), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming the clusters."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("backend", ["faiss", "torch", "sklearn"])
def test_backends_recover_separated_clusters(backend):
    x, truth = separated()
    res = kmeans(x, 5, seed=0, backend=backend)
    assert res.labels.shape == (200,) and res.centroids.shape == (5, 8)
    assert same_partition(res.labels, truth)
    # Inertia is the within-cluster sum of squares of the returned labels.
    manual = sum(((x[res.labels == c] - x[res.labels == c].mean(0)) ** 2).sum() for c in range(5))
    assert res.inertia == pytest.approx(manual, rel=1e-3)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_same_seed_same_labels(backend):
    x = np.random.default_rng(1).normal(size=(500, 16)).astype(np.float32)
    a = kmeans(x, 30, seed=3, backend=backend)
    b = kmeans(x, 30, seed=3, backend=backend)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = kmeans(x, 30, seed=4, backend=backend)
    assert not np.array_equal(a.labels, c.labels)


def test_kmeans_plus_plus_spreads_seeds_over_clusters():
    x, truth = separated(k=6)
    seeds = kmeans_plus_plus(torch.from_numpy(x), 6, seed=0)
    assert len(set(seeds.tolist())) == 6
    # D^2 sampling on clusters 50 sigma apart lands one seed in every cluster.
    assert sorted(truth[seeds].tolist()) == list(range(6))


def test_kmeans_plus_plus_with_duplicates_picks_distinct_rows():
    x = torch.zeros(10, 3)
    seeds = kmeans_plus_plus(x, 10, seed=0)
    assert sorted(seeds.tolist()) == list(range(10))


def test_torch_backend_relocates_empty_clusters():
    x = np.repeat(np.eye(2, dtype=np.float32), 5, axis=0)  # 2 distinct points, 4 clusters
    res = kmeans(x, 4, seed=0, backend="torch")
    assert res.inertia == pytest.approx(0.0)


def test_errors():
    with pytest.raises(ConfigError, match="Valid|must be one of"):
        resolve_backend("cuml")
    with pytest.raises(ConfigError, match="'k' parameter"):
        kmeans(np.zeros((3, 2)), 4)
    with pytest.raises(QueryError, match="row 1"):
        kmeans(np.array([[0, 0], [np.nan, 1], [2, 2]]), 2)
    with pytest.raises(QueryError, match=r"\[n, d\]"):
        kmeans(np.zeros(5), 2)


def test_auto_resolves_to_an_installed_backend():
    assert resolve_backend("auto") in {"faiss", "torch"}
