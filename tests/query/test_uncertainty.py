"""mge_uncertainty and tpd_uncertainty against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raydal.exceptions import QueryError
from raydal.query import mge_uncertainty, tpd_uncertainty


def test_mge_equals_autograd_gradient_norm_of_bce_head():
    torch.manual_seed(0)
    n, d, c = 12, 7, 5
    head = torch.nn.Linear(d, c, bias=False)
    h = torch.randn(n, d) * 3
    expected = []
    for i in range(n):
        head.zero_grad()
        p = torch.sigmoid(head(h[i : i + 1]))
        y_hat = (p >= 0.5).float().detach()
        torch.nn.functional.binary_cross_entropy(p, y_hat, reduction="sum").backward()
        expected.append(head.weight.grad.norm().item())
    with torch.no_grad():
        probs = torch.sigmoid(head(h))
    got = mge_uncertainty(probs, h)
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The score is not trivially constant: samples differ.
    assert np.ptp(got) > 1e-3


def test_mge_closed_form_and_pseudo_label_threshold():
    probs = np.array([[0.5, 0.2], [0.9, 0.6]])
    feats = np.array([[3.0, 4.0], [0.0, 2.0]])  # norms 5 and 2
    # p = 0.5 counts as positive (y_hat = 1): residuals (-0.5, 0.2) and (-0.1, -0.4).
    expected = [np.hypot(0.5, 0.2) * 5, np.hypot(0.1, 0.4) * 2]
    np.testing.assert_allclose(mge_uncertainty(probs, feats), expected)


def test_tpd_is_l2_distance_between_iterations():
    now = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2]], dtype=np.float32)
    prev = np.array([[0.6, 0.5, 0.5], [0.2, 0.2, 0.2]], dtype=np.float32)
    np.testing.assert_allclose(tpd_uncertainty(now, prev), [0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(tpd_uncertainty(torch.from_numpy(now), torch.from_numpy(prev)), [0.5, 0.0], atol=1e-6)


def test_bad_inputs_raise_query_error_with_fix():
    with pytest.raises(QueryError, match="not logits"):
        mge_uncertainty(np.array([[2.0, -1.0]]), np.ones((1, 3)))
    with pytest.raises(QueryError, match="non-finite"):
        mge_uncertainty(np.array([[np.nan, 0.5]]), np.ones((1, 3)))
    with pytest.raises(QueryError, match=r"\[N=1, D\]"):
        mge_uncertainty(np.array([[0.5, 0.5]]), np.ones((2, 3)))
    with pytest.raises(QueryError, match="same samples"):
        tpd_uncertainty(np.full((2, 3), 0.5), np.full((3, 3), 0.5))
