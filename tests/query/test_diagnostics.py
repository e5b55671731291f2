"""Query diagnostics: rank correlations of the uncertainty and the picked batch's labels, from known inputs."""

import numpy as np
import pytest

from raydal.exceptions import QueryError
from raydal.query.diagnostics import query_diagnostics, spearman


def test_spearman_is_the_rank_correlation_with_mean_ranks_for_ties():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)  # monotone: 1 whatever the scale
    assert spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    # ties: ranks of y are 1.5, 1.5, 3, 4, 5; Pearson of (1..5) with them
    y = np.array([0.0, 0.0, 1.0, 2.0, 3.0])
    ry = np.array([1.5, 1.5, 3, 4, 5])
    assert spearman(x, y) == pytest.approx(np.corrcoef(np.arange(1, 6), ry)[0, 1])
    assert spearman(x, np.ones(5)) is None and spearman(x[:2], x[:2]) is None  # undefined, not 0 or NaN
    with pytest.raises(QueryError, match="one shape"):
        spearman(x, x[:4])


def test_diagnostics_of_a_query_that_picks_by_feature_norm():
    # 8 pool rows, 3 classes; the number of predicted labels (p >= 0.6) is 0,1,1,2,2,3,3,3
    probs = np.array(
        [
            [0.1, 0.2, 0.3],
            [0.7, 0.2, 0.3],
            [0.1, 0.9, 0.3],
            [0.7, 0.6, 0.1],
            [0.1, 0.8, 0.9],
            [0.6, 0.8, 0.9],
            [0.9, 0.9, 0.7],
            [0.8, 0.7, 0.65],
        ]
    )
    norm = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    unc = norm * 0.5  # an uncertainty that is the feature norm, up to scale
    d = query_diagnostics(probs, [7, 6], 0.6, uncertainty=unc, uncertainty_name="mge", feature_norm=norm)
    assert d["uncertainty"] == "mge" and d["n_scored"] == 8 and d["threshold"] == 0.6 and d["n_picked"] == 2
    assert d["spearman_feature_norm"] == pytest.approx(1.0)
    n_labels = np.array([0, 1, 1, 2, 2, 3, 3, 3])
    assert d["spearman_n_labels"] == pytest.approx(round(spearman(unc, n_labels), 4))
    assert d["labels_per_image"] == {"picked": 3.0, "pool": pytest.approx(15 / 8)}
    assert d["label_counts"] == {"picked": [2, 2, 2], "pool": [5, 6, 4]}
    # no uncertainty yet (TPD's first query): the histograms only
    d0 = query_diagnostics(probs, [0], 0.5)
    assert d0["uncertainty"] is None and d0["spearman_feature_norm"] is None and d0["spearman_n_labels"] is None
    assert d0["label_counts"]["picked"] == [0, 0, 0] and d0["labels_per_image"]["picked"] == 0.0
    # without recorded feature norms, only that correlation is missing
    d1 = query_diagnostics(probs, [1], 0.6, uncertainty=unc, uncertainty_name="mge")
    assert d1["spearman_feature_norm"] is None and d1["spearman_n_labels"] is not None


def test_diagnostics_reject_bad_input():
    probs = np.full((4, 2), 0.5)
    with pytest.raises(QueryError, match=r"picked rows must lie in \[0, 4\)"):
        query_diagnostics(probs, [4], 0.5)
    with pytest.raises(QueryError, match="uncertainty of shape"):
        query_diagnostics(probs, [0], 0.5, uncertainty=np.zeros(3), uncertainty_name="mge")
    with pytest.raises(QueryError, match=r"\[N, C\]"):
        query_diagnostics(np.zeros(4), [0], 0.5)
