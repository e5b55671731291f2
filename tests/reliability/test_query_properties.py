"""Property-based tests (hypothesis) of the query functions, on arbitrary finite inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from raydal.exceptions import QueryError
from raydal.query import mge_uncertainty, select_diverse, tpd_uncertainty

pytestmark = pytest.mark.reliability
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
unit = st.floats(min_value=0.0, max_value=1.0, width=32)
non_finite = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def pools(draw, max_n: int = 40, max_d: int = 6):
    """(uncertainty [N], features [N, D]) with any finite float32 values, ties and duplicates included."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    unc = draw(arrays(np.float64, n, elements=finite | st.sampled_from([0.0, 1.0])))
    feats = draw(arrays(np.float32, (n, d), elements=finite | st.sampled_from([0.0, 1.0])))
    return unc, feats


@SETTINGS
@given(pool=pools(), b=st.integers(1, 12), m=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_select_diverse_picks_min_b_n_distinct_valid_indices(pool, b, m, seed):
    unc, feats = pool
    picked = select_diverse(unc, feats, b=b, m=m, seed=seed)
    assert picked.dtype == np.int64 and picked.ndim == 1
    assert len(picked) == min(b, len(unc)) == len(set(picked.tolist()))
    assert ((0 <= picked) & (picked < len(unc))).all()
    top = int(np.lexsort((np.arange(len(unc)), -unc))[0])  # the most uncertain (ties: lowest index)
    assert top in picked.tolist()  # it tops its cluster
    assert np.array_equal(picked, select_diverse(unc, feats, b=b, m=m, seed=seed))  # deterministic


@SETTINGS
@given(pool=pools(), b=st.integers(1, 12), bad=non_finite, data=st.data())
def test_select_diverse_refuses_non_finite_uncertainty(pool, b, bad, data):
    unc, feats = pool
    unc = unc.copy()
    unc[data.draw(st.integers(0, len(unc) - 1))] = bad
    with pytest.raises(QueryError, match="non-finite"):
        select_diverse(unc, feats, b=b, m=2)


@SETTINGS
@given(pool=pools(), b=st.integers(1, 6), bad=non_finite)
def test_select_diverse_refuses_non_finite_features_of_a_candidate(pool, b, bad):
    unc, feats = pool
    if len(unc) <= b:  # no clustering then: features are not read
        return
    feats = feats.copy()
    feats[int(np.lexsort((np.arange(len(unc)), -unc))[0]), 0] = bad  # the top candidate is clustered
    with pytest.raises(QueryError, match="non-finite"):
        select_diverse(unc, feats, b=b, m=2)


@st.composite
def probs_and_features(draw):
    n, c, d = draw(st.integers(1, 30)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    probs = draw(arrays(np.float64, (n, c), elements=unit | st.sampled_from([0.0, 0.5, 1.0])))
    feats = draw(arrays(np.float64, (n, d), elements=st.floats(-1e6, 1e6, allow_nan=False)))
    prev = draw(arrays(np.float64, (n, c), elements=unit))
    return probs, feats, prev


@SETTINGS
@given(data=probs_and_features())
def test_mge_shape_and_range(data):
    probs, feats, _ = data
    unc = mge_uncertainty(probs, feats)
    assert unc.shape == (len(probs),) and np.isfinite(unc).all() and (unc >= 0).all()
    bound = 0.5 * np.sqrt(probs.shape[1]) * np.linalg.norm(feats, axis=1)  # |p - 1[p >= 0.5]| <= 0.5 per class
    assert (unc <= bound * (1 + 1e-9) + 1e-12).all()


@SETTINGS
@given(data=probs_and_features())
def test_tpd_shape_and_range(data):
    probs, _, prev = data
    unc = tpd_uncertainty(probs, prev)
    assert unc.shape == (len(probs),) and np.isfinite(unc).all() and (unc >= 0).all()
    assert (unc <= np.sqrt(probs.shape[1]) * (1 + 1e-9)).all()  # probabilities differ by <= 1 per class
    assert np.allclose(tpd_uncertainty(probs, probs), 0.0)


@SETTINGS
@given(data=probs_and_features(), bad=non_finite, where=st.sampled_from(["probs", "features", "prev"]))
def test_mge_and_tpd_refuse_non_finite_input(data, bad, where):
    probs, feats, prev = (a.copy() for a in data)
    {"probs": probs, "features": feats, "prev": prev}[where][0, 0] = bad
    with pytest.raises(QueryError, match="non-finite|outside"):
        if where == "prev":
            tpd_uncertainty(probs, prev)
        else:
            mge_uncertainty(probs, feats)
            tpd_uncertainty(probs, prev)


@SETTINGS
@given(data=probs_and_features(), off=st.sampled_from([-0.1, 1.5, 3.0]))
def test_probabilities_outside_unit_interval_are_refused(data, off):
    probs, feats, prev = (a.copy() for a in data)
    probs[0, 0] = off
    with pytest.raises(QueryError, match="outside \\[0, 1\\]"):
        mge_uncertainty(probs, feats)
    with pytest.raises(QueryError, match="outside \\[0, 1\\]"):
        tpd_uncertainty(probs, prev)
