"""The diversity step of the two-step query: cluster the m*b most uncertain, take each cluster's best."""

from __future__ import annotations

import numpy as np

from raydal.exceptions import ConfigError, QueryError
from raydal.query.clustering import NITER, kmeans
from raydal.query.ranking import as_numpy, check_finite, rank_desc
from raydal.settings import Interval, check_value

__all__ = ["CLUSTER_FEATURES", "cluster_space", "gradient_embedding", "select_diverse"]

#: Spaces the diversity step can cluster in; "penultimate" is the paper's, the others are beyond it.
CLUSTER_FEATURES = ("penultimate", "normalized", "gradient")


def gradient_embedding(probs: "np.ndarray", features: "np.ndarray") -> np.ndarray:
    """MGE's (BADGE's) approximated last-layer gradient embedding, float32 [N, C*D].

    probs: [N, C] sigmoid probabilities p; features: [N, D] penultimate features h.
    Row i is vec((p_i - y_hat_i) h_i^T) with y_hat = 1[p >= 0.5]: the gradient of the
    BCE loss against the pseudo-labels w.r.t. the last layer's weights, whose norm is
    the MGE uncertainty (``raydal.query.mge``). Float32, as k-means clusters it: the
    m*b candidates cost m*b*C*D*4 bytes (60 x 17 x 1024: 4 MB; 3000 x 19 x 2048: 470 MB).
    """
    p = np.asarray(as_numpy(probs), dtype=np.float32)
    h = np.asarray(as_numpy(features), dtype=np.float32)
    if p.ndim != 2 or h.ndim != 2 or p.shape[0] != h.shape[0]:
        raise QueryError(f"gradient_embedding expects probs [N, C] and features [N, D]. Got {p.shape} and {h.shape}.")
    g = p - (p >= 0.5).astype(np.float32)
    return (g[:, :, None] * h[:, None, :]).reshape(len(h), -1)


def cluster_space(features: "np.ndarray", space: str = "penultimate", probs: "np.ndarray | None" = None) -> np.ndarray:
    """The vectors k-means clusters: features as is, L2-normalised, or the gradient embedding (needs probs)."""
    feats = as_numpy(features)
    if space == "penultimate":
        return feats
    if space == "normalized":
        f = np.asarray(feats, dtype=np.float64)
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        return f / np.where(norm > 0, norm, 1.0)
    if space == "gradient":
        if probs is None:
            raise QueryError("cluster space 'gradient' needs the candidates' probabilities: pass probs=[N, C].")
        return gradient_embedding(probs, feats)
    raise ConfigError(f"Unknown cluster space {space!r}: use penultimate, normalized or gradient.")


def _check_int(name: str, value: object, minimum: int) -> int:
    return check_value(value, name, "select_diverse", Interval(int, minimum))


def select_diverse(
    uncertainty: "np.ndarray | torch.Tensor",  # noqa: F821
    features: "np.ndarray | torch.Tensor",  # noqa: F821
    b: int,
    m: int,
    seed: int = 0,
    *,
    backend: str = "auto",
    niter: int = NITER,
    space: str = "penultimate",
    probs: "np.ndarray | torch.Tensor | None" = None,  # noqa: F821
) -> np.ndarray:
    """Pick ``b`` uncertain and mutually diverse samples (the paper's two-step query).

    uncertainty: [N] uncertainty scores, higher = more uncertain; all finite.
    features: [N, D] the samples' embeddings (penultimate-layer features).
    b: number of samples to select (>= 1).
    m: candidate multiplier (>= 1): the m*b most uncertain samples are clustered.
    seed: seeds k-means++; the same seed gives the same picks within a backend.
    backend: clustering backend, "auto" | "faiss" | "torch" | "sklearn".
    space: beyond the paper: "penultimate" (the paper) clusters ``features`` as given,
        "normalized" clusters them L2-normalised, "gradient" clusters the gradient
        embeddings (p - y_hat) h^T (see ``cluster_space``).
    probs: [N, C] sigmoid probabilities aligned with ``features``; needed by "gradient" only.

    Steps: rank by uncertainty (ties: lower index first), keep the top min(N, m*b),
    cluster their features into b clusters (k-means++ seeding, then k-means) and
    take the most uncertain member of every cluster. Should a cluster end up
    empty, the next most uncertain candidates not yet picked fill the gap, so
    the result always has exactly min(N, b) entries.

    Returns: int64 [min(N, b)] distinct indices into the inputs, most uncertain
    first. If N <= b all indices are returned; if m == 1 the top b are returned
    without clustering.
    """
    unc = np.asarray(as_numpy(uncertainty), dtype=np.float64)
    feats = as_numpy(features)
    b = _check_int("b", b, 1)
    m = _check_int("m", m, 1)
    if unc.ndim != 1:
        raise QueryError(f"select_diverse expects uncertainty of shape [N]. Got shape {unc.shape} instead.")
    if feats.ndim != 2 or feats.shape[0] != unc.shape[0]:
        raise QueryError(
            f"select_diverse expects features of shape [N={unc.shape[0]}, D]. Got shape {feats.shape} instead."
        )
    check_value(space, "space", "select_diverse", CLUSTER_FEATURES)
    if space == "gradient":
        if probs is None:
            raise QueryError("select_diverse: space 'gradient' needs the candidates' probabilities: pass probs=[N, C].")
        probs = as_numpy(probs)
        if probs.ndim != 2 or probs.shape[0] != unc.shape[0]:
            raise QueryError(
                f"select_diverse expects probs of shape [N={unc.shape[0]}, C]. Got shape {probs.shape} instead."
            )
    check_finite(unc, "uncertainty")
    order = rank_desc(unc)
    n = len(unc)
    if n <= b or m == 1:
        return order[:b].astype(np.int64)
    top = order[: min(n, m * b)]
    check_finite(feats[top], "features")
    cand = cluster_space(feats[top], space, probs[top] if probs is not None else None)
    labels = kmeans(cand, b, seed=seed, niter=niter, backend=backend).labels
    # ``top`` is ranked, so the first occurrence of each label is that cluster's most uncertain member.
    _, first = np.unique(labels, return_index=True)
    picked = np.zeros(len(top), dtype=bool)
    picked[first] = True
    missing = b - int(picked.sum())
    if missing > 0:  # empty clusters: fill with the next most uncertain unpicked candidates
        picked[np.flatnonzero(~picked)[:missing]] = True
    return top[picked].astype(np.int64)
