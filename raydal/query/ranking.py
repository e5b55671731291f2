"""Ranking policy shared by every strategy: order, tie-break, non-finite scores."""

from __future__ import annotations

import numpy as np

from raydal.exceptions import QueryError

__all__ = ["as_numpy", "check_finite", "rank_desc"]


def check_finite(values: np.ndarray, what: str, ids: np.ndarray | None = None) -> None:
    """Raise QueryError when ``values`` (any shape, rows first) holds NaN or +-inf.

    The message names the first offending row (by id when ``ids`` is given) and
    the count, since a non-finite score means the model diverged and ranking it
    would silently pick garbage.
    """
    finite = np.isfinite(values)
    if finite.all():
        return
    rows = ~finite.reshape(len(values), -1).all(axis=1) if values.ndim > 1 else ~finite
    bad = np.flatnonzero(rows)
    first = bad[0]
    where = f"id {str(ids[first])!r}" if ids is not None else f"index {first}"
    raise QueryError(
        f"{what} has {len(bad)} non-finite row(s) (NaN or inf), first at {where}. "
        "The model likely diverged or overflowed: check the training loss, lower the "
        "learning rate, or score in float32."
    )


def rank_desc(uncertainty: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Indices that sort ``uncertainty`` [N] from most to least uncertain.

    Ties are broken by ``ids`` [N] ascending when given, else by index ascending,
    so the ranking is deterministic whatever order the samples arrived in.
    """
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    keys = np.arange(len(uncertainty)) if ids is None else np.asarray(ids)
    return np.lexsort((keys, -uncertainty))


def as_numpy(x) -> np.ndarray:
    """A NumPy array from a NumPy array or a torch tensor (any device; bf16/fp16 become float32)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        t = x.detach().cpu()
        if t.is_floating_point() and t.element_size() < 4:
            t = t.float()
        return t.numpy()
    return np.asarray(x)
