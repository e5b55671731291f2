import numpy as np

from raydal.data.shards import override_labels


def test_override_replaces_only_listed_rows_and_copies():
    batch = {"id": np.array(["a", "b", "c"]), "labels": np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.uint8)}
    out = override_labels(batch, {"b": [0, 2], "zzz": [1]})
    assert out["labels"].tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 1]]
    assert batch["labels"][1].tolist() == [0, 1, 0]  # input untouched
    assert override_labels(batch, {}) is batch
