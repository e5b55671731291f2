"""Random: uniform sampling without replacement from the unlabeled pool (the baseline)."""

from __future__ import annotations

from raydal.query.base import QueryStrategy, register_strategy

__all__ = ["RandomStrategy"]


@register_strategy("random")
class RandomStrategy(QueryStrategy):
    """Needs no model: ``select(b, pool_ids=unlabeled_ids, seed=...)`` draws b ids.

    ``uncertainty`` is None, so ``requires_scoring`` is False and
    ``candidate_count`` is 0: the loop skips pool scoring entirely.
    """
