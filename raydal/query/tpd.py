"""TPD: temporal prediction discrepancy between this and the previous AL iteration (eq. 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from raydal.exceptions import QueryError
from raydal.query.base import QueryStrategy, register_strategy
from raydal.query.mge import check_probs

__all__ = ["TPD", "tpd_uncertainty"]


def tpd_uncertainty(probs: "np.ndarray | torch.Tensor", prev_probs: "np.ndarray | torch.Tensor") -> np.ndarray:  # noqa: F821
    """Unc_TPD = ||F_tau(X) - F_{tau-1}(X)||_2.

    probs: [N, C] sigmoid probabilities of this iteration's model.
    prev_probs: [N, C] the previous iteration's probabilities for the same rows.
    Returns: [N] float64 L2 distances.

    raydal keeps no second model: the previous iteration's pool probabilities
    are stored per sample id by the AL state and passed back in, so TPD costs
    one forward pass like the other strategies.
    """
    p = check_probs(probs)
    q = check_probs(prev_probs, "prev_probs")
    if q.shape != p.shape:
        raise QueryError(
            f"prev_probs must have the shape of probs {p.shape}. Got {q.shape} instead: pass the previous "
            "iteration's probabilities of the same samples, in the same order."
        )
    return np.linalg.norm(p - q, axis=1)


@register_strategy("tpd+clustering", clustering=True)
@register_strategy("tpd", clustering=False)
class TPD(QueryStrategy):
    """Rank by how much the predictions moved since the previous iteration.

    In the first iteration there are no previous predictions: ``score_pool``
    then keeps no candidates and ``select`` samples at random, as the paper does.
    """

    uncertainty: ClassVar[str] = "tpd"
    uncertainty_needs: ClassVar[frozenset[str]] = frozenset({"prev_probs"})

    def score(self, scored: Mapping[str, np.ndarray | None], prev_probs: np.ndarray | None = None) -> np.ndarray:
        if prev_probs is None:
            raise QueryError(f"Strategy {self.name!r} needs the previous iteration's probabilities: pass prev_probs.")
        return tpd_uncertainty(scored["probs"], prev_probs)
