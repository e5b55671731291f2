"""k-means with k-means++ seeding behind interchangeable backends (no Ray).

The diversity step of the two-step query clusters the m*b most uncertain
samples' embeddings into b clusters. Three backends compute the same thing:

- ``"faiss"``: ``faiss.Kmeans`` with ``init_method=ClusteringInitMethod_KMEANS_PLUS_PLUS``
  (faiss >= 1.15, as pyproject.toml pins it). Runs on the GPU when ``faiss.get_num_gpus() > 0``.
- ``"torch"``: k-means++ seeding plus Lloyd iterations in PyTorch, on CUDA when
  present. The fallback where FAISS is missing (a GPU box without faiss-gpu).
- ``"sklearn"``: ``sklearn.cluster.KMeans(init="k-means++", n_init=1)``; the
  reference implementation, slow at b = 1000 (see benchmarks/RESULTS.md).

``"auto"`` picks FAISS-GPU, else torch on CUDA, else FAISS on CPU, else torch
on CPU. Deciding imports no torch (CUDA is looked for through the driver
library), so the AL driver on a CPU node clusters with FAISS and never loads torch. Same input + same seed give the same result within a backend and
device; different backends give different (equally valid) clusterings.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from raydal.exceptions import ConfigError, QueryError
from raydal.settings import Interval, check_value
from raydal.utils import rng as make_rng

log = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss", "torch", "sklearn")
#: Maximum Lloyd iterations of k-means (the default of kmeans, select_diverse and the strategies).
NITER = 20
#: Rows x centroids per distance block in the torch backend (64 MiB of float32).
_BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of one k-means run.

    labels: [n] int64 cluster index of every point, in [0, k).
    centroids: [k, d] float32.
    inertia: sum over points of the squared L2 distance to their centroid.
    backend: the backend that ran, with its device ("faiss-cpu", "torch-cuda", ...).
    """

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    backend: str


def _faiss():
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def cuda_available() -> bool:
    """Whether this process sees a CUDA device, as ``torch.cuda.is_available()`` says, without importing torch.

    Asks torch when it is already imported; otherwise the CUDA driver library
    (``cuInit`` + ``cuDeviceGetCount``, which honour ``CUDA_VISIBLE_DEVICES``):
    no driver library, no device.
    """
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def resolve_backend(backend: str = "auto") -> str:
    """Map ``backend`` ("auto", "faiss", "torch", "sklearn") to a concrete one.

    Raises ConfigError for an unknown name or a backend whose package is missing.
    """
    check_value(backend, "backend", "resolve_backend", BACKENDS)
    if backend == "auto":
        faiss = _faiss()
        if faiss is not None and faiss.get_num_gpus() > 0:
            return "faiss"
        if cuda_available():
            return "torch"
        return "faiss" if faiss is not None else "torch"
    if backend == "faiss" and _faiss() is None:
        raise ConfigError(
            "The 'faiss' clustering backend needs the faiss package: `pip install faiss-cpu` "
            "(or faiss-gpu), or pass backend='torch'."
        )
    if backend == "sklearn":
        try:
            import sklearn  # noqa: F401
        except ImportError as e:
            raise ConfigError(
                "The 'sklearn' clustering backend needs scikit-learn: `pip install scikit-learn`, "
                "or pass backend='torch'."
            ) from e
    return backend


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    niter: int = NITER,
    backend: str = "auto",
    device: str | None = None,
) -> KMeansResult:
    """Cluster ``x`` into ``k`` clusters: k-means++ seeding, then k-means.

    x: [n, d] features (any float dtype; clustered as float32), all finite.
    k: number of clusters, 1 <= k <= n.
    niter: maximum number of Lloyd iterations.
    backend: "auto" | "faiss" | "torch" | "sklearn" (see the module docstring).
    device: torch backend only ("cpu", "cuda"); default CUDA when present.
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise QueryError(f"kmeans expects features of shape [n, d]. Got shape {x.shape} instead.")
    n = x.shape[0]
    k = check_value(k, "k", f"kmeans (on {n} rows)", Interval(int, 1, n))
    niter = check_value(niter, "niter", "kmeans", Interval(int, 1))
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise QueryError(
            f"kmeans got non-finite features (first at row {bad}); the model's embeddings "
            "overflowed or it diverged: check the training loss."
        )
    name = resolve_backend(backend)
    if name == "faiss":
        return _kmeans_faiss(x, int(k), seed, niter)
    if name == "sklearn":
        return _kmeans_sklearn(x, int(k), seed, niter)
    return _kmeans_torch(x, int(k), seed, niter, device)


# --------------------------------------------------------------------------- torch


def _torch_device(device: str | None):
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def kmeans_plus_plus(x: "torch.Tensor", k: int, seed: int | np.random.Generator) -> np.ndarray:  # noqa: F821
    """Indices of ``k`` distinct seed points picked by k-means++ (D^2 sampling).

    x: [n, d] float tensor on any device. The random draws come from a NumPy
    generator on the host so the choice does not depend on the device's RNG.
    When every remaining point coincides with a chosen one (duplicates), the
    next seed is drawn uniformly among the points not yet chosen.
    """
    import torch

    gen = make_rng(seed)
    n = x.shape[0]
    x_sq = (x * x).sum(dim=1)

    def sq_dist_to(i: int) -> "torch.Tensor":
        # ||x - c||^2 by expansion: one mat-vec instead of an [n, d] temporary (~10x faster on CPU).
        return (x_sq - 2.0 * (x @ x[i]) + x_sq[i]).clamp_min_(0.0).double()

    chosen = np.empty(k, dtype=np.int64)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    chosen[0] = gen.integers(n)
    taken[chosen[0]] = True
    d2 = sq_dist_to(int(chosen[0]))
    d2[taken] = 0.0
    for i in range(1, k):
        u = gen.random()
        cum = torch.cumsum(d2, dim=0)
        total = float(cum[-1])
        if total > 0.0:
            # side="right" lands on a bucket of positive width, never on a chosen point.
            r = torch.tensor([u * total], dtype=cum.dtype, device=cum.device)
            idx = min(int(torch.searchsorted(cum, r, right=True)), n - 1)
        else:
            open_idx = torch.nonzero(~taken).flatten()
            idx = int(open_idx[int(u * len(open_idx))])
        chosen[i] = idx
        taken[idx] = True
        d2 = torch.minimum(d2, sq_dist_to(idx))
        d2[idx] = 0.0  # exactly: rounding in the expansion must not let a seed be drawn twice
    return chosen


def _assign(x, x_sq, centroids):
    """Nearest centroid of every row: (labels [n] int64, squared distances [n])."""
    import torch

    n, k = x.shape[0], centroids.shape[0]
    c_sq = (centroids * centroids).sum(dim=1)
    step = max(1, _BLOCK_ELEMENTS // max(k, 1))
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    dists = torch.empty(n, dtype=x.dtype, device=x.device)
    for s in range(0, n, step):
        d = x_sq[s : s + step, None] - 2.0 * (x[s : s + step] @ centroids.T) + c_sq[None, :]
        dmin, lab = d.min(dim=1)
        labels[s : s + step] = lab
        dists[s : s + step] = dmin.clamp_min_(0.0)
    return labels, dists


def _kmeans_torch(x: np.ndarray, k: int, seed: int, niter: int, device: str | None) -> KMeansResult:
    import torch

    dev = _torch_device(device)
    xt = torch.from_numpy(x).to(dev)
    x_sq = (xt * xt).sum(dim=1)
    centroids = xt[torch.from_numpy(kmeans_plus_plus(xt, k, seed)).to(dev)].clone()
    labels = None
    for _ in range(niter):
        new_labels, dists = _assign(xt, x_sq, centroids)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, xt)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty, None].to(xt.dtype)
        empty = torch.nonzero(~nonempty).flatten()
        if len(empty):
            # Relocate empty centroids onto the points farthest from their centroid (as sklearn does).
            far = torch.argsort(dists, descending=True, stable=True)[: len(empty)]
            centroids[empty] = xt[far]
    labels, dists = _assign(xt, x_sq, centroids)
    return KMeansResult(
        labels=labels.cpu().numpy().astype(np.int64),
        centroids=centroids.cpu().numpy(),
        inertia=float(dists.double().sum()),
        backend=f"torch-{dev.type}",
    )


# --------------------------------------------------------------------------- faiss


def _kmeans_faiss(x: np.ndarray, k: int, seed: int, niter: int) -> KMeansResult:
    faiss = _faiss()
    n, d = x.shape
    use_gpu = faiss.get_num_gpus() > 0
    params = dict(
        niter=niter,
        seed=int(seed),
        verbose=False,
        min_points_per_centroid=1,  # m*b points into b clusters is few per cluster by design
        max_points_per_centroid=max(n, 1),  # never subsample: every candidate gets a label
        gpu=use_gpu,
        init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
    )
    km = faiss.Kmeans(d, k, **params)
    km.train(x)
    dist, lab = km.index.search(x, 1)
    return KMeansResult(
        labels=lab[:, 0].astype(np.int64),
        centroids=np.asarray(km.centroids, dtype=np.float32),
        inertia=float(np.maximum(dist[:, 0], 0.0).astype(np.float64).sum()),
        backend="faiss-gpu" if use_gpu else "faiss-cpu",
    )


# --------------------------------------------------------------------------- sklearn


def _kmeans_sklearn(x: np.ndarray, k: int, seed: int, niter: int) -> KMeansResult:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=niter, random_state=seed).fit(x)
    return KMeansResult(
        labels=km.labels_.astype(np.int64),
        centroids=km.cluster_centers_.astype(np.float32),
        inertia=float(km.inertia_),
        backend="sklearn",
    )
