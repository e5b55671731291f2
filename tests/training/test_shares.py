"""Rank shares of the shard files, and combining the ranks' parts, in one process."""

import numpy as np
import pytest
import torch

from raydal.data.shards import iter_batches, read_ids, read_split
from raydal.exceptions import DatasetError
from raydal.models import ModelSpec
from raydal.query.scoring import merge_pool_scores, score_pool
from raydal.training import evaluate
from raydal.training.loop import CheckpointPolicy, EpochProgress
from raydal.training.shares import (
    combine_evaluations,
    evaluation_part,
    file_rows,
    iter_range_batches,
    locate_ids,
    plan_labeled_shares,
    read_share,
    row_ranges,
)


@pytest.fixture(scope="module")
def model(manifest):
    torch.manual_seed(0)
    return ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands).build(seed=0).eval()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_labeled_shares_are_equal_disjoint_and_read_only_those_rows(manifest, world):
    assert len(manifest.split_files("pool")) >= 2  # shares cross file boundaries
    pool = read_ids(manifest, "pool").tolist()
    labeled = sorted(pool[::3])  # spread over every file
    shares = plan_labeled_shares(locate_ids(manifest, "pool", labeled), world)
    rows = [read_share(manifest, s) for s in shares]
    per = len(labeled) // world
    assert [len(r["id"]) for r in rows] == [per] * world  # equal: the ranks step together
    got = np.concatenate([r["id"] for r in rows]).tolist()
    assert len(set(got)) == len(got) and set(got) <= set(labeled)
    assert len(labeled) - len(got) == len(labeled) % world  # only the remainder is left out
    # Same rows, images and labels as the in-process reader.
    ref = read_split(manifest, "pool", ids=got)
    np.testing.assert_array_equal(np.concatenate([r["image"] for r in rows]), ref["image"])
    np.testing.assert_array_equal(np.concatenate([r["labels"] for r in rows]), ref["labels"])
    # Deterministic: a restarted worker group gets the same shares.
    assert plan_labeled_shares(locate_ids(manifest, "pool", labeled), world) == shares


def test_unknown_labeled_id_is_named(manifest):
    with pytest.raises(DatasetError, match="not in the 'pool' split.*nope"):
        locate_ids(manifest, "pool", ["nope", read_ids(manifest, "pool")[0]])


@pytest.mark.parametrize("world", [1, 2, 4])
def test_row_ranges_cover_a_split_once_in_balanced_parts(manifest, world):
    files = file_rows(manifest, "pool")
    parts = [list(iter_range_batches(manifest, row_ranges(files, r, world), 7)) for r in range(world)]
    ids = [np.concatenate([b["id"] for b in p]) if p else np.zeros(0, str) for p in parts]
    assert np.concatenate(ids).tolist() == read_ids(manifest, "pool").tolist()
    assert max(map(len, ids)) - min(map(len, ids)) <= 1


def test_ranks_evaluation_and_scores_combine_to_the_one_process_result(manifest, model):
    world = 3
    files = {s: file_rows(manifest, s) for s in ("val", "pool")}
    parts = [
        evaluation_part(model, iter_range_batches(manifest, row_ranges(files["val"], r, world), 5), "cpu")
        for r in range(world)
    ]
    combined = combine_evaluations(parts)
    whole = evaluate(model, iter_batches(manifest, "val", 64), "cpu")
    assert combined["micro_f1"] == whole["micro_f1"] and combined["mAP"] == pytest.approx(whole["mAP"])
    assert combined["loss"] == pytest.approx(whole["loss"], rel=1e-6)

    labeled = set(read_ids(manifest, "pool")[:10].tolist())
    k = 12
    ranks = [
        score_pool(
            model,
            iter_range_batches(manifest, row_ranges(files["pool"], r, world), 8, exclude=labeled),
            "mge+clustering",
            k,
        )
        for r in range(world)
    ]
    merged = merge_pool_scores(ranks, k)
    ref = score_pool(model, iter_batches(manifest, "pool", 64, exclude=labeled), "mge+clustering", k)
    assert merged.ids.tolist() == ref.ids.tolist()
    np.testing.assert_allclose(merged.probs, ref.probs, atol=1e-5)
    assert merged.cand_ids.tolist() == ref.cand_ids.tolist()
    np.testing.assert_allclose(merged.cand_embeddings, ref.cand_embeddings, atol=1e-5)


def test_checkpoint_policy():
    every10 = CheckpointPolicy(every_epochs=10, every_seconds=None)
    assert [e for e in range(1, 26) if every10.due(e, 25, 0.0)] == [10, 20, 25]
    timed = CheckpointPolicy(every_epochs=None, every_seconds=60)
    assert not timed.due(3, 25, 59.0) and timed.due(3, 25, 60.0) and timed.due(25, 25, 0.0)
    assert CheckpointPolicy().every_epochs == 10  # the default is not every epoch
    for bad in (dict(every_epochs=0), dict(every_seconds=0), dict(every_epochs=1.5)):
        with pytest.raises(Exception, match="checkpoint"):
            CheckpointPolicy(**bad)


def test_progress_lines_about_ten_per_fit_with_rate_and_time_left():
    progress = EpochProgress(epochs=100, world=2)
    lines = [progress({"epoch": e, "train_loss": 0.5, "train_samples": 50, "seconds": 2.0}) for e in range(1, 101)]
    shown = [line for line in lines if line]
    assert len(shown) == 10 and shown[-1].startswith("  epoch 100/100")
    assert "50 img/s" in shown[0] and "180s left" in shown[0]  # 2 ranks x 50 images in 2 s; 90 epochs x 2 s
