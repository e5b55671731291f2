"""The run's threshold (``--f1-threshold``) is the one its recorded F1, predictions and exports use."""

import numpy as np
import pytest

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.data.shards import iter_batches, load_manifest
from raydal.models import load_checkpoint
from raydal.training import evaluate
from raydal.training.metrics import default_threshold, multilabel_metrics
from raydal.training.shares import combine_evaluations, evaluation_part


def test_a_non_default_threshold_changes_the_recorded_f1(make_config):
    cfg = make_config(
        strategy="random", iterations=0, train={"epochs": 1, "batch_size": 8, "lr": 0.05, "threshold": 0.2}
    )
    assert cfg.train_config().threshold == 0.2 != default_threshold()
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    recorded = state.history[-1]
    manifest = load_manifest(cfg.shards_dir)
    net = load_checkpoint(recorded["checkpoint"], device="cpu")
    scores = evaluate(net, iter_batches(manifest, "val", 32), "cpu", return_probs=True)
    at_run = multilabel_metrics(scores["labels"], scores["probs"], 0.2)
    at_default = multilabel_metrics(scores["labels"], scores["probs"])
    assert at_run["micro_f1"] != at_default["micro_f1"]  # the threshold matters on this model
    assert recorded["val"]["micro_f1"] == pytest.approx(at_run["micro_f1"])
    assert recorded["val"]["macro_f1"] == pytest.approx(at_run["macro_f1"])
    assert recorded["val"]["mAP"] == pytest.approx(at_default["mAP"])  # threshold-free


def test_combined_evaluations_use_the_threshold_given(make_config):
    """The Ray executor's path: each rank's probabilities, combined at the run's threshold."""
    cfg = make_config()
    manifest = load_manifest(cfg.shards_dir)
    from raydal.models import create_model

    net = create_model("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    batches = list(iter_batches(manifest, "val", 8))
    parts = [evaluation_part(net, batches[k::2], "cpu") for k in range(2)]
    probs = np.concatenate([p["probs"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    f1 = {}
    for threshold in (0.3, 0.6):
        f1[threshold] = combine_evaluations(parts, threshold)["micro_f1"]
        assert f1[threshold] == pytest.approx(multilabel_metrics(labels, probs, threshold)["micro_f1"])
    assert f1[0.3] != f1[0.6]
