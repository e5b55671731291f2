"""The Ray Train launcher: 2 CPU workers (DDP over gloo) on the tiny prepared archive.

One ``fit()`` costs ~20 s on a 2-core box, so the module runs a single training
and checks everything on it (and one longer fit that loses its pool files mid-way).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from raydal.data.shards import iter_batches, load_manifest, read_ids
from raydal.models import ModelSpec, load_checkpoint, read_checkpoint_meta
from raydal.training import TrainConfig, evaluate

pytestmark = pytest.mark.ray


#: The first Ray Train worker to report its 4th epoch waits there until the test lets it go on.
FAULTS = "train:epoch@4=pause-once"
K = 10  # pool candidates kept by the in-worker scoring
#: The fit's F1 threshold, not the default: the workers' evaluations must use it.
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def ray_run(ray_faults, tiny_shards, tmp_path_factory):
    """One fit that also evaluates val/test and scores the pool in the workers (an AL iteration's run)."""
    from raydal.distributed.train import PoolScoring, train_with_ray

    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.025, seed=0, threshold=THRESHOLD)  # not the default
    out = tmp_path_factory.mktemp("ray_train")
    result = train_with_ray(
        spec,
        cfg,
        tiny_shards,
        labeled,
        out,
        num_workers=2,
        cpus_per_worker=0.5,
        run_name="test",
        evaluate_splits=("val", "test"),
        score=PoolScoring("mge+clustering", K, batch_size=7),
    )
    return manifest, labeled, out, result


def test_ray_training_reports_every_epoch_with_validation(ray_run):
    manifest, labeled, out, result = ray_run
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert [h["ll_stopped"] for h in result.history] == [False, False, True]  # stop at round(0.6 * 3) = 2
    # Each rank trains on its half of the labeled set (equal split).
    assert all(h["train_samples"] == len(labeled) // 2 for h in result.history)
    assert np.isfinite(result.metrics["train_loss"])
    assert result.metrics["val_n_samples"] == manifest.splits["val"]["count"]
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 3
    # The default checkpoint policy (every 10 epochs or 5 minutes, and the last) wrote one
    # checkpoint for 3 quick epochs, under out_dir/ray/<unique run name>.
    runs = list((out / "ray").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("test-")
    assert sorted(p.name for p in runs[0].glob("epoch-*")) == ["epoch-00003"]


def test_workers_evaluate_and_score_like_one_process_on_the_checkpoint(ray_run):
    from raydal.query.scoring import score_pool

    manifest, labeled, _, result = ray_run
    model = load_checkpoint(result.checkpoint_dir)
    for split in ("val", "test"):
        ref = evaluate(model, iter_batches(manifest, split, 16), threshold=THRESHOLD)  # the run's threshold
        got = result.evaluations[split]
        assert got["n_samples"] == manifest.splits[split]["count"]
        assert got["micro_f1"] == ref["micro_f1"] and got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    ref = score_pool(model, iter_batches(manifest, "pool", 16, exclude=set(labeled)), "mge+clustering", K)
    got = result.pool_scores
    assert got.ids.tolist() == ref.ids.tolist()  # the whole unlabeled pool, once
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-5)
    assert got.cand_ids.tolist() == ref.cand_ids.tolist() and len(got.cand_ids) == K
    np.testing.assert_allclose(got.cand_embeddings, ref.cand_embeddings, atol=1e-4)


def test_labeled_rows_are_read_once_per_fit(ray_faults, tiny_shards, tmp_path):
    """The pool files are deleted while a worker is held after epoch 4: training goes on from the rows in memory."""
    import shutil
    import threading

    from support import reached, release, wait_for_marker

    from raydal.distributed.train import train_with_ray

    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    manifest = load_manifest(shards)
    labeled = list(read_ids(manifest, "pool"))[::2][:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    epochs = 24
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.025, seed=0)
    out, result = tmp_path / "train", {}

    def run():
        try:
            result["r"] = train_with_ray(
                spec,
                cfg,
                shards,
                labeled,
                out,
                num_workers=2,
                cpus_per_worker=0.5,
                validate=False,
                checkpoint_every=4,
                checkpoint_seconds=None,
                run_name="once",
                max_failures=0,
            )
        except BaseException as err:  # noqa: BLE001 - reported below
            result["err"] = err

    thread = threading.Thread(target=run)
    thread.start()
    try:
        held = wait_for_marker(ray_faults, "train:epoch", alive=thread.is_alive)  # a rank after epoch 4
        for f in manifest.split_files("pool"):
            Path(f).unlink()
    finally:
        release(ray_faults, "train:epoch")
        thread.join(timeout=600)
    assert "err" not in result, result.get("err")
    assert reached(ray_faults, "train:epoch").count(held) == epochs  # it went on after the files were gone
    history = result["r"].history
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert all(h["train_samples"] == len(labeled) // 2 for h in history)  # each rank: its half, every epoch
    # checkpoint_every=4: epochs 4, 8, ..., 24 were checkpointed, Ray keeps the last two.
    assert sorted(p.name for p in (out / "ray").glob("*/epoch-*")) == ["epoch-00020", "epoch-00024"]


def test_ray_checkpoint_scores_like_rank0_validation_in_process(ray_run):
    manifest, _, _, result = ray_run
    assert read_checkpoint_meta(result.checkpoint_dir)["extra"]["epoch"] == 3
    assert not (result.checkpoint_dir / "train_state.pt").exists()
    model = load_checkpoint(result.checkpoint_dir)
    first = evaluate(model, iter_batches(manifest, "val", 16), threshold=THRESHOLD, return_probs=True)
    second = evaluate(
        load_checkpoint(result.checkpoint_dir),
        iter_batches(manifest, "val", 16),
        threshold=THRESHOLD,
        return_probs=True,
    )
    np.testing.assert_array_equal(first["probs"], second["probs"])
    assert first["micro_f1"] == pytest.approx(result.metrics["val_micro_f1"])
    assert first["loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)


def test_bad_arguments_fail_before_ray_starts(tiny_shards, tmp_path):
    from raydal.distributed.train import train_with_ray
    from raydal.exceptions import ConfigError

    manifest = load_manifest(tiny_shards)
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    ids = list(read_ids(manifest, "pool"))[:8]
    cfg = TrainConfig(epochs=1)
    with pytest.raises(ConfigError, match="at least 2 labeled samples per worker: got 3 for 2"):
        train_with_ray(spec, cfg, tiny_shards, ids[:3], tmp_path)
    with pytest.raises(ConfigError, match="'num_workers'.*>= 1. Got 0"):
        train_with_ray(spec, cfg, tiny_shards, ids, tmp_path, num_workers=0)
    with pytest.raises(ConfigError, match="'checkpoint_every'"):
        train_with_ray(spec, cfg, tiny_shards, ids, tmp_path, checkpoint_every=0)
    with pytest.raises(ConfigError, match="'checkpoint_seconds'"):
        train_with_ray(spec, cfg, tiny_shards, ids, tmp_path, checkpoint_seconds=-1)
    with pytest.raises(ConfigError, match="'evaluate_splits'.*'train'"):
        train_with_ray(spec, cfg, tiny_shards, ids, tmp_path, evaluate_splits=("train",))
    wrong = ModelSpec("smallcnn", num_classes=manifest.num_classes + 1, in_channels=manifest.bands)
    with pytest.raises(ConfigError, match="does not fit the shards"):
        train_with_ray(wrong, cfg, tiny_shards, ids, tmp_path)
