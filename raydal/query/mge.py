"""MGE: magnitude of the approximated gradient embedding (eqs. 6-7, after BADGE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from raydal.exceptions import QueryError
from raydal.query.base import QueryStrategy, register_strategy
from raydal.query.ranking import as_numpy, check_finite

__all__ = ["MGE", "mge_uncertainty"]


def check_probs(probs: np.ndarray, what: str = "probs") -> np.ndarray:
    """Validate [N, C] sigmoid probabilities; return them as float64."""
    p = np.asarray(as_numpy(probs), dtype=np.float64)
    if p.ndim != 2:
        raise QueryError(f"{what} must have shape [N, C] (sigmoid probabilities). Got shape {p.shape} instead.")
    check_finite(p, what)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise QueryError(
            f"{what} holds values outside [0, 1] (min {p.min():.3g}, max {p.max():.3g}): pass "
            "sigmoid(logits), not logits."
        )
    return p


def mge_uncertainty(
    probs: "np.ndarray | torch.Tensor",  # noqa: F821
    features: "np.ndarray | torch.Tensor",  # noqa: F821
    feature_norm: bool = True,
) -> np.ndarray:
    """Unc_MGE: the L2 norm of the last layer's BCE gradient against pseudo-labels.

    probs: [N, C] sigmoid probabilities p.
    features: [N, D] penultimate features h (the embeddings the last layer reads).
    feature_norm: True (the paper) keeps the ||h|| factor; False (beyond the paper, a
        diagnostic switch) returns ||p - 1[p >= 0.5]||_2 alone.
    Returns: [N] float64, ||p - 1[p >= 0.5]||_2 * ||h||_2.

    With logits z = W h (+ bias), L = BCE(sigmoid(z), y_hat) summed over classes
    gives dL/dW = (p - y_hat) h^T, an outer product whose Frobenius norm is
    ||p - y_hat|| * ||h||: no autograd needed. The gradient is taken w.r.t. the
    weight matrix W only, as in the paper's eq. 6; including the bias would
    multiply by sqrt(||h||^2 + 1) instead of ||h||.
    """
    p = check_probs(probs)
    h = np.asarray(as_numpy(features), dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != p.shape[0]:
        raise QueryError(f"features must have shape [N={p.shape[0]}, D]. Got shape {h.shape} instead.")
    check_finite(h, "features")
    y_hat = (p >= 0.5).astype(np.float64)
    if not feature_norm:
        return np.linalg.norm(p - y_hat, axis=1)
    return np.linalg.norm(p - y_hat, axis=1) * np.linalg.norm(h, axis=1)


@register_strategy("mge+clustering", clustering=True)
@register_strategy("mge", clustering=False)
class MGE(QueryStrategy):
    """Rank by the gradient-embedding magnitude of the last layer (``mge_uncertainty``)."""

    uncertainty: ClassVar[str] = "mge"
    uncertainty_needs: ClassVar[frozenset[str]] = frozenset({"embeddings"})

    def score(self, scored: Mapping[str, np.ndarray | None], prev_probs: np.ndarray | None = None) -> np.ndarray:
        return mge_uncertainty(scored["probs"], scored["embeddings"], feature_norm=self.mge_feature_norm)
