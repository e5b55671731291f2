"""Predictions on Ray Data: Ray tasks run the forward passes over every split of a shard set.

The in-process path (``raydal.predict.predict_arrays_local``) and this one
return the same ``(ids, paths, probs)``; ``raydal.predict`` writes the files.

Tasks, not an actor pool: Ray Data creates each pool actor with its map function
and DataContext ``ray.put`` into the object store, and restarts actors by
default (``max_restarts=-1``); since Ray 2.47 Ray's core logs an ERROR line for
every such actor (ray-project/ray#53727: restarts cannot re-create evicted
constructor arguments). Tasks keep the fault tolerance (a task lost with its
node is retried elsewhere) without that line, and each worker process loads the
model once (``_loaded``), as an actor would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raydal.config import ALConfig

__all__ = ["predict_batch", "predict_arrays_ray"]

#: (checkpoint, manifest, device) -> (model, manifest) of this worker process: one at a time.
_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def _loaded(checkpoint_dir: str, manifest_dir: str, device: str) -> tuple[Any, Any]:
    """The model and manifest, loaded on this process's first batch and kept for the next ones."""
    key = (checkpoint_dir, manifest_dir, device)
    if key not in _LOADED:
        from raydal.data.shards import load_manifest
        from raydal.models import load_checkpoint

        _LOADED.clear()  # a new model replaces the last one
        _LOADED[key] = (load_checkpoint(checkpoint_dir, device), load_manifest(manifest_dir))
    return _LOADED[key]


def predict_batch(
    batch: dict[str, np.ndarray], checkpoint_dir: str, manifest_dir: str, device: str = "cpu", torch_threads: int = 1
) -> dict[str, np.ndarray]:
    """``map_batches`` function: shard columns ``id``, ``image``, ``labels``, ``path`` in; ``id``, ``path``,
    ``probs`` float32 [n, C] out (full float32, as the exported model computes)."""
    import torch

    from raydal.data.shards import decode_batch
    from raydal.query.scoring import score_batch

    torch.set_num_threads(max(1, int(torch_threads)))
    net, manifest = _loaded(checkpoint_dir, manifest_dir, device)
    decoded = decode_batch(batch, manifest)
    probs = score_batch(net, decoded["image"], torch.device(device), amp="off")["probs"]
    return {"id": decoded["id"], "path": np.asarray(batch["path"], dtype=str), "probs": probs}


def predict_arrays_ray(
    checkpoint: str,
    manifest,
    batch_size: int = ALConfig.score_batch_size,
    concurrency: int = 1,
    num_gpus: float = 0,
) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids [N], paths [N], probs float32 [N, C])`` of every split of ``manifest``, on Ray Data.

    Starts an embedded Ray when none is running (``ensure_ray``). concurrency:
    tasks at a time; num_gpus: GPUs per task (CUDA then).
    """
    import ray

    from raydal.distributed.session import cpu_share_leaving_one_free, ensure_ray

    if not ray.is_initialized():
        ensure_ray()
    files = [f for split in manifest.splits for f in manifest.split_files(split)]
    if not files:
        return [], [], np.zeros((0, manifest.num_classes), np.float32)
    num_cpus = 1.0 if num_gpus > 0 else cpu_share_leaving_one_free(concurrency)
    ds = ray.data.read_parquet(files, columns=["id", "image", "labels", "path"])
    ds = ds.repartition(target_num_rows_per_block=batch_size)  # spread the rows over the tasks
    ds = ds.map_batches(
        predict_batch,
        compute=ray.data.TaskPoolStrategy(size=concurrency),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_kwargs=dict(
            checkpoint_dir=str(checkpoint),
            manifest_dir=str(manifest.root),
            device="cuda" if num_gpus > 0 else "cpu",
            torch_threads=max(1, round(num_cpus)),
        ),
    )
    ids: list[str] = []
    paths: list[str] = []
    probs: list[np.ndarray] = []
    for block in ds.iter_batches(batch_format="numpy", batch_size=None):
        ids += [str(i) for i in block["id"]]
        paths += [str(p) for p in block["path"]]
        probs.append(np.asarray(block["probs"], dtype=np.float32).reshape(len(block["id"]), -1))
    return ids, paths, np.concatenate(probs)
