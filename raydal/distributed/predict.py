"""Predictions on Ray Data: an actor pool runs the forward passes over every split of a shard set.

The in-process path (``raydal.predict.predict_arrays_local``) and this one
return the same ``(ids, paths, probs)``; ``raydal.predict`` writes the files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PredictActor", "predict_arrays_ray"]


class PredictActor:
    """``map_batches`` callable class: one model per actor; shard rows in, probabilities out."""

    def __init__(self, checkpoint_dir: str, manifest_dir: str, device: str = "cpu", torch_threads: int = 1):
        import torch

        from raydal.data.shards import load_manifest
        from raydal.models import load_checkpoint

        torch.set_num_threads(max(1, int(torch_threads)))
        self.device = torch.device(device)
        self.manifest = load_manifest(manifest_dir)
        self.net = load_checkpoint(checkpoint_dir, self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """batch: shard columns ``id``, ``image``, ``labels``, ``path``; returns ``id``, ``path``,
        ``probs`` float32 [n, C]."""
        from raydal.data.shards import decode_batch
        from raydal.query.scoring import score_batch

        decoded = decode_batch(batch, self.manifest)
        probs = score_batch(self.net, decoded["image"], self.device, amp="off")["probs"]  # float32, as exported
        return {"id": decoded["id"], "path": np.asarray(batch["path"], dtype=str), "probs": probs}


def predict_arrays_ray(checkpoint: str, manifest, batch_size: int = 64, concurrency: int = 1,
                       num_gpus: float = 0) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids [N], paths [N], probs float32 [N, C])`` of every split of ``manifest``, on Ray Data.

    Starts an embedded Ray when none is running (``ensure_ray``). concurrency:
    actors; num_gpus: GPUs per actor (CUDA then).
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
    ds = ds.repartition(target_num_rows_per_block=batch_size)  # spread the rows over the actors
    ds = ds.map_batches(
        PredictActor,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_kwargs=dict(checkpoint_dir=str(checkpoint), manifest_dir=str(manifest.root),
                                   device="cuda" if num_gpus > 0 else "cpu",
                                   torch_threads=max(1, round(num_cpus))),
    )
    ids: list[str] = []
    paths: list[str] = []
    probs: list[np.ndarray] = []
    for block in ds.iter_batches(batch_format="numpy", batch_size=None):
        ids += [str(i) for i in block["id"]]
        paths += [str(p) for p in block["path"]]
        probs.append(np.asarray(block["probs"], dtype=np.float32).reshape(len(block["id"]), -1))
    return ids, paths, np.concatenate(probs)
