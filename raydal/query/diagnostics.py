"""What a query ranked by, in a few numbers (beyond the paper): kept per query in the run's history.

An uncertainty that mostly tracks the feature norm ||h||, or the number of labels
the model predicts, picks images for how they look rather than for what the model
does not know (on raydal's generated UC Merced images MGE's rank correlation with ||h||
was once 0.89 and its top picks were 4.9-label images). ``query_diagnostics`` measures this
over the scored pool at query time, and keeps only what the report prints: two
rank correlations and two per-class label counts, never per-sample arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raydal.exceptions import QueryError

__all__ = ["HISTORY_KEY", "query_diagnostics", "spearman"]

#: The history record's key for ``query_diagnostics`` (``raydal.al.loop``, ``raydal.al.report``).
HISTORY_KEY = "query_diagnostics"


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation of ``x`` and ``y`` [N] (ties get their mean rank), or None
    where it is undefined: fewer than 3 rows, or either side constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise QueryError(f"spearman expects two arrays of one shape [N]. Got {x.shape} and {y.shape}.")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def query_diagnostics(
    probs: np.ndarray,
    picked: np.ndarray,
    threshold: float,
    uncertainty: np.ndarray | None = None,
    uncertainty_name: str | None = None,
    feature_norm: np.ndarray | None = None,
) -> dict[str, Any]:
    """The diagnostics of one query over the N scored (unlabeled) pool rows.

    probs: float [N, C] sigmoid probabilities of the scored pool.
    picked: int [b] rows of ``probs`` the query selected.
    threshold: the run's decision threshold: a label is predicted where p >= threshold.
    uncertainty: float [N] the score the strategy ranked by, or None (none computed: TPD's
        first query); uncertainty_name: its name ("mge", "ll", "tpd").
    feature_norm: float [N] ||h||_2 of the penultimate features, or None (not recorded).

    Returns a JSON-ready dict: ``uncertainty``, ``n_scored``, ``threshold``,
    ``spearman_feature_norm`` and ``spearman_n_labels`` (None where not computable),
    ``labels_per_image`` {picked, pool} (mean number of predicted labels) and
    ``label_counts`` {picked, pool} (images predicted to carry each class, [C] ints) with
    ``n_picked``.
    """
    p = np.asarray(probs)
    rows = np.asarray(picked, dtype=np.int64)
    if p.ndim != 2:
        raise QueryError(f"query_diagnostics expects probs of shape [N, C]. Got {p.shape}.")
    n = len(p)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise QueryError(f"query_diagnostics: picked rows must lie in [0, {n}). Got {rows.min()}..{rows.max()}.")
    predicted = p >= threshold
    n_labels = predicted.sum(axis=1)
    out: dict[str, Any] = {
        "uncertainty": uncertainty_name if uncertainty is not None else None,
        "n_scored": int(n),
        "threshold": float(threshold),
        "spearman_feature_norm": None,
        "spearman_n_labels": None,
    }
    if uncertainty is not None:
        unc = np.asarray(uncertainty)
        if unc.shape != (n,):
            raise QueryError(f"query_diagnostics expects uncertainty of shape [N={n}]. Got {unc.shape}.")
        if feature_norm is not None:
            out["spearman_feature_norm"] = _rounded(spearman(unc, np.asarray(feature_norm)))
        out["spearman_n_labels"] = _rounded(spearman(unc, n_labels))
    out["labels_per_image"] = {
        "picked": round(float(n_labels[rows].mean()), 4) if rows.size else None,
        "pool": round(float(n_labels.mean()), 4) if n else None,
    }
    out["label_counts"] = {
        "picked": predicted[rows].sum(axis=0).astype(int).tolist(),
        "pool": predicted.sum(axis=0).astype(int).tolist(),
    }
    out["n_picked"] = int(rows.size)
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
