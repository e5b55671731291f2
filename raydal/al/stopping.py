"""When to stop labeling: stabilizing predictions and the recent slope of the F1 curve (no Ray here).

**Stabilizing predictions** (Bloodgood & Vijay-Shanker 2009, "A Method for Stopping
Active Learning Based on Stabilizing Predictions and the Need for User-Adjustable
Stopping", CoNLL; small-text's ``KappaAverage``): a fixed *stop set* of unlabeled
pool images needs no labels; each new model's predictions on it are compared with
the previous model's by Cohen's κ, and the predictions count as stable once the mean
κ of the last :data:`WINDOW` consecutive pairs reaches :data:`KAPPA_STABLE`
(the paper's k = 3 and 0.99). Multi-label here: κ is taken over the C × n binary
decisions (class c predicted for image i: probability >= the run's F1 threshold)
pooled into one 2 × 2 table, not a mean of per-class κ values (a class that neither
model ever predicts has no per-class κ at all).

The stop set is :data:`STOP_SET_SIZE` pool ids drawn with the run's seed
(:func:`stop_set`); each comparison uses the stop-set images both models scored
(an image labeled in between leaves it), and records how many that was.

**The slope of the F1 curve** (:func:`f1_slope`): least squares over the last
``WINDOW`` rounds (``WINDOW + 1`` models) of test F1 against labeled images, with
its 95 % interval (Student's t, ``raydal.al.stats.ALPHA``), in percentage points
per 100 labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raydal.al.stats import ALPHA, LEVEL
from raydal.exceptions import ConfigError

#: Pool images in the stop set (all of them when the pool is smaller).
STOP_SET_SIZE = 1000
#: Consecutive model pairs whose κ is averaged, and rounds the F1 slope is fitted over.
WINDOW = 3
#: The mean κ at which the predictions count as stable (Bloodgood & Vijay-Shanker's 0.99).
KAPPA_STABLE = 0.99
#: The key of the agreement record in a history entry (``raydal.al.loop``).
HISTORY_KEY = "stop_set"


def stop_set(pool_ids: np.ndarray, seed: int, size: int = STOP_SET_SIZE) -> np.ndarray:
    """The stop set: ``min(size, N)`` ids of the sorted pool ``pool_ids`` [N] (str or packed),
    drawn without replacement by ``seed``; str [n], sorted. The same pool and seed give the
    same set every iteration."""
    from raydal.al.poolids import unpack_ids

    n = min(size, len(pool_ids))
    rows = np.sort(np.random.default_rng(seed).choice(len(pool_ids), size=n, replace=False))
    ids = np.asarray(pool_ids)[rows]
    return unpack_ids(ids) if ids.dtype.kind == "S" else ids.astype(str)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's κ of two raters' binary decisions ``a``, ``b`` (bool, same shape; all cells pooled).

    κ = (p_o - p_e) / (1 - p_e), p_o the observed agreement and p_e the agreement
    expected from each rater's rate of True. When p_e = 1 (both raters always give
    the same one answer) κ is 1, as small-text defines it.
    """
    a, b = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape or not len(a):
        raise ConfigError(f"cohen_kappa needs two non-empty decision arrays of one shape. Got {a.shape} and {b.shape}.")
    p_o = float(np.mean(a == b))
    pa, pb = float(a.mean()), float(b.mean())
    p_e = pa * pb + (1 - pa) * (1 - pb)
    if p_e >= 1.0:
        return 1.0
    return (p_o - p_e) / (1 - p_e)


def stop_set_kappa(
    prev: tuple[np.ndarray, np.ndarray],
    cur: tuple[np.ndarray, np.ndarray],
    stop_ids: np.ndarray,
    threshold: float,
) -> tuple[float, int]:
    """(κ, n): the agreement of two models on the stop-set images both scored.

    ``prev``, ``cur``: ``(ids [N] sorted, str or packed; probs [N, C] sigmoid probabilities)``
    of two scoring passes; ``stop_ids``: str [S] (:func:`stop_set`). A class is predicted
    where its probability is >= ``threshold``. κ is NaN when no stop-set image was scored
    by both (n = 0).
    """
    from raydal.al.poolids import positions

    rows_prev, rows_cur = positions(prev[0], stop_ids), positions(cur[0], stop_ids)
    both = (rows_prev >= 0) & (rows_cur >= 0)
    n = int(np.count_nonzero(both))
    if not n:
        return float("nan"), 0
    decided_prev = np.asarray(prev[1])[rows_prev[both]] >= threshold
    decided_cur = np.asarray(cur[1])[rows_cur[both]] >= threshold
    return cohen_kappa(decided_prev, decided_cur), n


def kappas(history: list[dict[str, Any]]) -> list[float]:
    """The recorded κ of consecutive models, oldest first (history entries without one skipped)."""
    return [h[HISTORY_KEY]["kappa"] for h in history if HISTORY_KEY in h and h[HISTORY_KEY].get("kappa") is not None]


def is_stable(kappa_values: list[float], window: int = WINDOW, level: float | None = None) -> bool:
    """Bloodgood & Vijay-Shanker's rule: the mean of the last ``window`` κ values >= ``level``
    (default :data:`KAPPA_STABLE`; never with fewer than ``window`` values)."""
    level = KAPPA_STABLE if level is None else level
    last = kappa_values[-window:]
    return len(last) == window and all(math.isfinite(k) for k in last) and float(np.mean(last)) >= level


@dataclass(frozen=True)
class Slope:
    """Least-squares slope of test F1 per labeled image over the last rounds.

    ``per_label`` in F1 per label (× 10^4: percentage points per 100 labels);
    ``ci_low``/``ci_high`` its 95 % interval, None with 2 points (no residual);
    ``labels``: the first and last label count fitted; ``points``: how many models.
    """

    per_label: float
    ci_low: float | None
    ci_high: float | None
    labels: tuple[int, int]
    points: int


def f1_slope(n_labeled: list[int] | np.ndarray, f1: list[float] | np.ndarray, rounds: int = WINDOW) -> Slope | None:
    """The slope of ``f1`` [K] against ``n_labeled`` [K] over the last ``rounds`` rounds
    (``rounds + 1`` points); None with fewer than 2 points or no spread in labels."""
    from scipy import stats

    x = np.asarray(n_labeled, dtype=np.float64)[-(rounds + 1) :]
    y = np.asarray(f1, dtype=np.float64)[-(rounds + 1) :]
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or np.ptp(x) == 0:
        return None
    fit = stats.linregress(x, y)
    low = high = None
    if len(x) > 2:
        half = float(stats.t.ppf(1 - ALPHA / 2, len(x) - 2)) * float(fit.stderr)
        low, high = float(fit.slope) - half, float(fit.slope) + half
    return Slope(float(fit.slope), low, high, (int(x[0]), int(x[-1])), len(x))


def slope_text(s: Slope) -> str:
    """``+0.40 points per 100 labels over the last 3 rounds (340..400 labels; 95% CI -1.20..+2.00)``."""
    per100 = 1e4  # F1 per label -> percentage points per 100 labels
    rounds = s.points - 1
    text = (
        f"{per100 * s.per_label:+.2f} points per 100 labels over the last {rounds} "
        f"round{'s' if rounds != 1 else ''} ({s.labels[0]}..{s.labels[1]} labels"
    )
    if s.ci_low is None:
        return text + "; 2 points: no interval)"
    return text + f"; {LEVEL} CI {per100 * s.ci_low:+.2f}..{per100 * s.ci_high:+.2f})"


def advice(history: list[dict[str, Any]], stop_when: str | None = None) -> dict[str, Any]:
    """Stopping advice from a run's history (``raydal.al.state.ALState.history``).

    Returns ``{"kappas": [...], "stable": bool, "slope": Slope | None, "text": str,
    "rule": stop_when}``; ``text`` is one line with the numbers.
    """
    ks = kappas(history)
    stable = is_stable(ks)
    tested = [h for h in history if h.get("test", {}).get("n_samples", 1) and "micro_f1" in h.get("test", {})]
    slope = f1_slope([h["n_labeled"] for h in tested], [h["test"]["micro_f1"] for h in tested])
    parts = []
    if ks:
        last = ", ".join(f"{k:.3f}" for k in ks[-WINDOW:])
        verdict = (
            "stable" if stable else f"not yet stable: needs {WINDOW} values" if len(ks) < WINDOW else "not yet stable"
        )
        parts.append(
            f"κ between consecutive models on the stop set {last} (mean of the last {WINDOW} >= "
            f"{KAPPA_STABLE} is stable by Bloodgood & Vijay-Shanker's rule: {verdict})"
        )
    else:
        parts.append(
            "no κ yet: it needs two consecutive models' pool probabilities (a scoring strategy "
            "saves them at each query; random scores nothing)"
        )
    if slope is not None:
        parts.append(f"test micro-F1 {slope_text(slope)}")
    elif tested:
        parts.append("F1 slope: needs two models with test scores")
    else:
        parts.append("no labeled test split: no F1 slope")
    if stop_when == "stable":
        parts.append(
            "--stop-when stable: the run stops here" if stable else "--stop-when stable: the run goes on until stable"
        )
    return {"kappas": ks, "stable": stable, "slope": slope, "rule": stop_when, "text": "; ".join(parts)}
