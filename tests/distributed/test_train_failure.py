"""A Ray Train worker SIGKILLed mid-training: the group restarts from the last checkpoint and finishes."""

import os
import signal
import threading
import time

from pathlib import Path

import pytest

from raydal.data.shards import load_manifest, read_ids
from raydal.models import ModelSpec, read_checkpoint_meta
from raydal.training import TrainConfig

pytestmark = pytest.mark.ray


def _train_workers() -> list[int]:
    """PIDs of Ray Train worker processes (Ray titles them ray::RayTrainWorker)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return sorted(pids)


def test_killed_worker_restarts_from_last_checkpoint(ray_local, tiny_shards, tmp_path):
    from raydal.distributed.train import train_with_ray

    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    epochs = 12
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.025, seed=0)
    out = tmp_path / "train"
    result: dict = {}

    def run():
        try:
            result["r"] = train_with_ray(spec, cfg, tiny_shards, labeled, out, num_workers=2,
                                         cpus_per_worker=0.5, max_failures=2, validate=False, run_name="fail")
        except BaseException as err:  # noqa: BLE001 - reported below
            result["err"] = err

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.time() + 400
    while time.time() < deadline and thread.is_alive() and killed is None:
        done = sorted((out / "ray").glob("*/epoch-*"))
        if done and int(done[-1].name.split("-")[1]) >= 2:
            workers = _train_workers()
            if workers:
                killed = int(done[-1].name.split("-")[1])
                os.kill(workers[-1], signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=600)
    assert "err" not in result, result.get("err")
    assert killed is not None and killed < epochs, "training ended before a worker could be killed"
    history = result["r"].history
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))  # every epoch once, resumed not restarted
    assert read_checkpoint_meta(result["r"].checkpoint_dir)["extra"]["epoch"] == epochs
