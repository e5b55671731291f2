"""A Ray Train worker SIGKILLed mid-training: the group restarts from the last checkpoint and finishes
exactly as an uninterrupted run does, under the default checkpoint policy (every 10 epochs)."""

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


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _train_workers() -> list[int]:
    """PIDs of this test's Ray Train worker processes (Ray titles them ray::RayTrainWorker).

    Only descendants of this Ray instance's raylet: the machine may run other Ray instances.
    """
    import ray

    session = ray._private.worker.global_worker.node.get_session_dir_path()
    raylets, workers = set(), []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            cmd = (proc / "cmdline").read_bytes()
            if b"raylet" in cmd and session.encode() in cmd:
                raylets.add(int(proc.name))
            elif b"RayTrainWorker" in cmd:
                workers.append(int(proc.name))
        except OSError:
            continue
    mine = []
    for pid in workers:
        try:
            ancestor = pid
            for _ in range(4):
                ancestor = _parent(ancestor)
                if ancestor in raylets:
                    mine.append(pid)
                    break
        except OSError:
            continue
    return sorted(mine)


def test_killed_worker_restarts_from_last_checkpoint(ray_local, tiny_shards, tmp_path):
    from raydal.distributed.train import train_with_ray

    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    epochs = 30
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.025, seed=0)
    out = tmp_path / "train"
    result: dict = {}

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
        )

    def run():
        try:
            result["r"] = train(out)
        except BaseException as err:  # noqa: BLE001 - reported below
            result["err"] = err

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.time() + 400
    while time.time() < deadline and thread.is_alive() and killed is None:
        done = sorted((out / "ray").glob("*/epoch-*"))
        if done:  # the first checkpoint (epoch 10 under the default policy) is committed
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
    assert killed == 10
    # Exact: same shares, seeds and optimizer state after the restart, so the same losses as a run
    # that was never interrupted.
    reference = train(tmp_path / "reference").history
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in reference], rel=1e-5)
