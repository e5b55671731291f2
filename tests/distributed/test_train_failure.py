"""A Ray Train worker SIGKILLed mid-training: the group restarts from the last checkpoint and finishes
exactly as an uninterrupted run does, under the default checkpoint policy (every 10 epochs).

Both fits are jobs of one kept worker group (``KeptWorkerGroup``, what the Ray executor trains
on), so this is also its resume within a job; tests/reliability/test_node_loss.py resumes a
group started for one call."""

import os
import signal
import threading
from pathlib import Path

import pytest

from raydal.data.shards import load_manifest, read_ids
from raydal.models import ModelSpec, read_checkpoint_meta
from raydal.training import TrainConfig

pytestmark = pytest.mark.ray

#: The first Ray Train worker to report its 10th epoch (the first checkpoint) hangs there; the test kills it.
#: The restarted workers reach the point again (at their 10th epoch) and go on.
FAULTS = "train:epoch@10=hang-once"


def _registered(storage: Path, name: str) -> bool:
    """Whether Ray Train's controller has registered checkpoint ``name`` of a run under ``storage``
    (the run's checkpoint manager snapshot lists it).

    A worker's report only queues the checkpoint; the controller takes it at its next poll of the
    worker (every 2 s). A worker killed before that would take the report with it."""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    return any(name in snapshot.read_text() for snapshot in storage.glob(f"*/{CHECKPOINT_MANAGER_SNAPSHOT_FILENAME}"))


def test_killed_worker_restarts_from_last_checkpoint(ray_faults, tiny_shards, tmp_path):
    from support import reached, wait_for_marker, wait_until

    from raydal.distributed.train import train_with_ray
    from raydal.distributed.workers import KeptWorkerGroup

    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    epochs = 30
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.025, seed=0)
    out = tmp_path / "train"
    result: dict = {}
    group = KeptWorkerGroup()

    def train(folder):
        return train_with_ray(
            spec,
            cfg,
            tiny_shards,
            labeled,
            folder,
            num_workers=2,
            cpus_per_worker=0.5,
            max_failures=2,
            validate=False,
            run_name="fail",
            torch_threads=1,
            workers=group,
        )

    def run():
        try:
            result["r"] = train(out)
        except BaseException as err:  # noqa: BLE001 - reported below
            result["err"] = err

    thread = threading.Thread(target=run)
    thread.start()
    hung = wait_for_marker(ray_faults, "train:epoch", alive=thread.is_alive)  # epoch 10 reported, checkpointed
    wait_until(
        lambda: _registered(out / "ray", "epoch-00010"),
        "Ray Train to register the epoch-10 checkpoint",
        alive=thread.is_alive,
    )
    before = set(reached(ray_faults, "train:epoch"))  # the first worker group (both ranks reached epoch 9 at least)
    os.kill(hung, signal.SIGKILL)
    thread.join(timeout=600)
    assert "err" not in result, result.get("err")
    history = result["r"].history
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert read_checkpoint_meta(result["r"].checkpoint_dir)["extra"]["epoch"] == epochs
    # Resumed, not restarted: each worker of the new group trained epochs 11..30 only.
    restarted = [pid for pid in reached(ray_faults, "train:epoch") if pid not in before]
    assert sorted(restarted.count(pid) for pid in set(restarted)) == [epochs - 10, epochs - 10]
    # Exact: same shares, seeds and optimizer state after the restart, so the same losses as a run
    # that was never interrupted (the next job of the same, restarted, group).
    try:
        reference = train(tmp_path / "reference").history
    finally:
        group.close()
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in reference], rel=1e-5)
