"""LL: rank by the loss predicted by the model's loss-prediction module (eq. 4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from raydal.exceptions import QueryError
from raydal.query.base import QueryStrategy, register_strategy
from raydal.query.ranking import as_numpy

__all__ = ["LearnedLoss"]


@register_strategy("ll+clustering", clustering=True)
@register_strategy("ll", clustering=False)
class LearnedLoss(QueryStrategy):
    """Unc_LL(X) = l_hat(X): the predicted per-sample BCE loss (after Yoo & Kweon, 2019)."""

    uncertainty: ClassVar[str] = "ll"
    uncertainty_needs: ClassVar[frozenset[str]] = frozenset({"pred_loss"})

    def score(self, scored: Mapping[str, np.ndarray | None], prev_probs: np.ndarray | None = None) -> np.ndarray:
        pred_loss = scored.get("pred_loss")
        if pred_loss is None:
            raise QueryError(
                f"Strategy {self.name!r} needs the loss-prediction head: build the model with "
                "create_model(..., ll=True) and train it with the LL loss."
            )
        out = np.asarray(as_numpy(pred_loss), dtype=np.float64)
        if out.ndim != 1:
            raise QueryError(f"pred_loss must have shape [N]. Got shape {out.shape} instead.")
        return out
