"""The Ray Train launcher: 2 CPU workers (DDP over gloo) on the tiny prepared archive.

One ``fit()`` costs ~20 s on a 2-core box, so the module runs a single training
and checks everything on it.
"""

import json

import numpy as np
import pytest

from raydal.data.shards import iter_batches, load_manifest, read_ids
from raydal.models import ModelSpec, load_checkpoint, read_checkpoint_meta
from raydal.training import TrainConfig, evaluate

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_run(ray_local, tiny_shards, tmp_path_factory):
    from raydal.distributed.train import train_with_ray

    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.025, seed=0)
    out = tmp_path_factory.mktemp("ray_train")
    result = train_with_ray(spec, cfg, tiny_shards, labeled, out, num_workers=2, cpus_per_worker=0.5,
                            run_name="test")
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
    # Ray kept the checkpoints (num_to_keep=2) under out_dir/ray/<unique run name>.
    runs = list((out / "ray").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("test-")
    assert sorted(p.name for p in runs[0].glob("epoch-*")) == ["epoch-00002", "epoch-00003"]


def test_ray_checkpoint_scores_like_rank0_validation_in_process(ray_run):
    manifest, _, _, result = ray_run
    assert read_checkpoint_meta(result.checkpoint_dir)["extra"]["epoch"] == 3
    assert not (result.checkpoint_dir / "train_state.pt").exists()
    model = load_checkpoint(result.checkpoint_dir)
    first = evaluate(model, iter_batches(manifest, "val", 16), return_probs=True)
    second = evaluate(load_checkpoint(result.checkpoint_dir), iter_batches(manifest, "val", 16), return_probs=True)
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
    wrong = ModelSpec("smallcnn", num_classes=manifest.num_classes + 1, in_channels=manifest.bands)
    with pytest.raises(ConfigError, match="does not fit the shards"):
        train_with_ray(wrong, cfg, tiny_shards, ids, tmp_path)
