"""The paired t-test behind every verdict: known answers from printed t tables and hand arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raydal.al.stats import interval_text, paired_difference, verdict_text
from raydal.exceptions import ConfigError

#: Two-sided 5 % critical values of Student's t from a printed table (df -> t(0.975, df)).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262}


def _with_t(t: float, n: int) -> np.ndarray:
    """n differences with sample sd 1 whose t statistic is exactly ``t``."""
    spread = np.linspace(-1.0, 1.0, n)
    spread /= spread.std(ddof=1)
    return t / math.sqrt(n) + spread


def test_hand_computed_t_test():
    """d = 1..5: mean 3, sd sqrt(2.5), SE 0.7071, t = 4.243 on 4 df; CI 3 ± 2.776 x 0.7071."""
    r = paired_difference([1.0, 2.0, 3.0, 4.0, 5.0])
    assert r.n == 5 and r.mean == 3.0
    assert r.t == pytest.approx(3 / math.sqrt(0.5), rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((3 - 2.776 * math.sqrt(0.5), 3 + 2.776 * math.sqrt(0.5)), abs=1e-3)
    assert r.p == pytest.approx(0.01324, abs=1e-4)  # 2 x P(T_4 > 4.243)
    assert r.verdict == "holds"


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_interval_half_width_is_the_table_quantile(df):
    r = paired_difference(_with_t(1.0, df + 1))
    se = 1 / math.sqrt(df + 1)
    assert (r.ci_high - r.ci_low) / 2 == pytest.approx(T_TABLE[df] * se, abs=1e-3 * se)


def test_three_trials_at_t_2_75_are_inconclusive():
    """The issue's "LL+C beats LL": t = 2.75 with 3 trials passed "mean > 2 SE" but not a 5 % test
    (two-sided critical value 4.303; even one-sided, 2.920)."""
    r = paired_difference(_with_t(2.75, 3))
    assert r.t == pytest.approx(2.75)
    assert r.verdict == "inconclusive" and 0.05 < r.p < 0.2 and r.ci_low < 0 < r.ci_high


def test_sidedness_is_two_sided():
    """t = 3.5 on 2 df: past the one-sided 5 % value (2.920), short of the two-sided one (4.303)."""
    r = paired_difference(_with_t(3.5, 3))
    assert r.verdict == "inconclusive" and r.p == pytest.approx(0.0728, abs=5e-4)


def test_five_trials_decide_both_ways():
    assert paired_difference(_with_t(3.0, 5)).verdict == "holds"  # 3.0 > 2.776
    assert paired_difference(_with_t(-3.0, 5)).verdict == "does not hold"  # the opposite is seen
    assert paired_difference(_with_t(2.7, 5)).verdict == "inconclusive"  # 2.7 < 2.776


def test_verdict_agrees_with_p_and_interval():
    rng = np.random.default_rng(0)
    for _ in range(200):
        r = paired_difference(rng.normal(0.5, 1.0, size=int(rng.integers(2, 9))))
        significant = r.p < 0.05
        assert significant == (r.ci_low > 0 or r.ci_high < 0)
        assert r.verdict == ("inconclusive" if not significant else "holds" if r.mean > 0 else "does not hold")


def test_no_effect_is_called_about_5_percent_of_the_time():
    rng = np.random.default_rng(1)
    called = np.mean([paired_difference(rng.normal(size=3)).verdict != "inconclusive" for _ in range(4000)])
    assert 0.035 < called < 0.065


def test_small_and_degenerate_samples():
    none, one = paired_difference([]), paired_difference([0.02])
    assert none.verdict == one.verdict == "inconclusive" and math.isnan(none.mean)
    assert one.mean == 0.02 and math.isnan(one.ci_low) and math.isnan(one.p)
    assert paired_difference([0.0, 0.0, 0.0]).verdict == "inconclusive"
    same = paired_difference([0.01, 0.01, 0.01])  # no spread at all: the interval is the point
    assert same.verdict == "holds" and same.ci_low == pytest.approx(0.01) and same.p == 0.0
    with pytest.raises(ConfigError, match="finite"):
        paired_difference([0.1, float("nan")])


def test_texts():
    r = paired_difference([0.01, 0.02, 0.03])
    assert interval_text(r.mean, r.ci_low, r.ci_high, r.n) == "+2.00 (95% CI -0.48..+4.48, 3 pairs)"
    one = paired_difference([-0.05]).as_dict()
    assert one["ci_low"] is None and one["verdict"] == "inconclusive"
    assert interval_text(one["mean"], one["ci_low"], one["ci_high"], one["n"]) == "-5.00 (1 pair: no interval)"
    assert verdict_text("holds", "random") == "ahead of random at 5%"
    assert verdict_text("does not hold", "random") == "behind random at 5%"
    assert verdict_text("inconclusive", "random") == "inconclusive at 5%"
