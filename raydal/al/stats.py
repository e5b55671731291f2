"""When does a difference between two query strategies count: a paired t-test at 5 %.

Every verdict raydal prints about a difference (a strategy's area under the
F1-vs-labels curve minus random's, a finding of the fidelity study) comes from
:func:`paired_difference`, so the report, the comparison a job prints and the
study agree.

The rule: d holds one difference per trial, paired by seed (same initial
labeled set and first model, only the query differs). The 95 % confidence
interval of mean(d) is ``mean ± t(0.975, n-1) · sd(d) / sqrt(n)``; the claim
"d > 0" **holds** when the whole interval is above 0, **does not hold** when
the whole interval is below 0 (the opposite is seen), and is **inconclusive**
otherwise. That is a two-sided t-test at 5 % (p < 0.05), 2.5 % in each
direction. Two-sided, because a verdict can fall either way: a one-sided test
at 5 % per direction would call 10 % of no-effect comparisons one way or the
other. With n = 3 the interval's half-width is 4.30 standard errors, so "mean
> 2 SE" (the rule this replaces) is far from enough.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from raydal.exceptions import ConfigError

#: Two-sided significance level of every verdict; the intervals are 1 - ALPHA.
ALPHA = 0.05
LEVEL = f"{1 - ALPHA:.0%}"
VERDICTS = ("holds", "does not hold", "inconclusive")
#: Paired trials per arm that a study should run before it states a verdict (the fidelity study's default).
MIN_TRIALS = 5


@dataclass(frozen=True)
class PairedDifference:
    """The mean of n paired differences, its 95 % interval and what it supports."""

    n: int
    mean: float  # nan when n = 0
    ci_low: float  # nan when n < 2: one pair has no spread
    ci_high: float
    t: float  # mean / (sd / sqrt(n)); nan when n < 2 or every d is 0
    p: float  # two-sided
    verdict: str  # one of VERDICTS, for the claim "d > 0"

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The fields, with None for nan (JSON has no nan)."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in dataclasses.asdict(self).items()}


def paired_difference(d: np.ndarray | list[float]) -> PairedDifference:
    """Paired t-test of ``d`` (float [n], one difference per pair) against 0, two-sided at ``ALPHA``."""
    from scipy import stats

    d = np.asarray(d, dtype=np.float64).ravel()
    if not np.isfinite(d).all():
        raise ConfigError(
            f"The paired differences must be finite numbers. Got {d.tolist()} instead: "
            "a trial without a finished curve has no area; leave it out."
        )
    n = len(d)
    nan = float("nan")
    if n == 0:
        return PairedDifference(0, nan, nan, nan, nan, nan, "inconclusive")
    mean = float(d.mean())
    if n == 1:
        return PairedDifference(1, mean, nan, nan, nan, nan, "inconclusive")
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * se
    if se > 0:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    else:  # every pair differs by exactly the same amount
        t, p = (nan, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    low, high = mean - half, mean + half
    verdict = "holds" if low > 0 else "does not hold" if high < 0 else "inconclusive"
    return PairedDifference(n, mean, low, high, t, p, verdict)


def interval_text(mean: float, low: float | None, high: float | None, n: int, scale: float = 100.0) -> str:
    """``+1.23 (95% CI -0.40..+2.86, 5 pairs)`` in ``scale`` units (100: F1 -> percentage points)."""
    if n == 0:
        return f"{scale * mean:+.2f} (unpaired: no interval)"
    if n == 1 or low is None or high is None or math.isnan(low):
        return f"{scale * mean:+.2f} (1 pair: no interval)"
    return f"{scale * mean:+.2f} ({LEVEL} CI {scale * low:+.2f}..{scale * high:+.2f}, {n} pairs)"


def verdict_text(verdict: str, than: str) -> str:
    """A verdict on "d = A - ``than`` > 0" in words: ``ahead of random at 5%``."""
    level = f"{ALPHA:.0%}"
    return {"holds": f"ahead of {than} at {level}", "does not hold": f"behind {than} at {level}"}.get(
        verdict, f"inconclusive at {level}"
    )
