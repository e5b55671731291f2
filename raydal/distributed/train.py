"""The Ray Train launcher: ``raydal.training.fit`` data-parallel under a ``TorchTrainer``.

Pipeline: ``read_parquet`` of the pool shards -> keep the labeled ids (an Arrow
``is_in`` filter) -> ``datasets={"train": ...}`` split equally across the
workers (``DataConfig(datasets_to_split=["train"])``; the optional ``val``
dataset is not split and only rank 0 reads it). Each worker decodes its shard
with ``raydal.data.shards.decode_batch`` and runs the one training loop
through DDP (gloo on CPU, NCCL on GPU). Every rank calls ``ray.train.report``
each epoch; rank 0 passes the checkpoint folder (model + optimizer state), so a
restarted worker group resumes from the last committed epoch.

The driver builds the initial model (seeded fresh init, ``spec.weights``, or the
warm-start checkpoint) and ships its weights through the object store, so the
workers need no access to those files; they need the shard files (a shared
filesystem or a URI such as ``s3://...``) and ``storage_path``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raydal.constants import CHECKPOINT_SUBDIR, ENV_TRAIN_LOG_LEVEL, HISTORY_FILE, TRAIN_STATE_FILE
from raydal.exceptions import ConfigError, RaydalError
from raydal.models import ModelSpec
from raydal.training import TrainConfig, TrainResult, build_initial_model
from raydal.utils import atomic_write_json

__all__ = ["train_with_ray"]


def _train_worker(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-worker entry of the ``TorchTrainer``; returns rank 0's history to the driver."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from raydal.data.shards import decode_batch, override_labels
    from raydal.faults import fault_point
    from raydal.training.loop import epoch_seed, fit

    # This process only trains: its root logger decides what Ray Train's per-report INFO
    # lines (a logger named by file path, outside RunConfig's logging_config) print.
    logging.getLogger().setLevel(os.environ.get(ENV_TRAIN_LOG_LEVEL, "WARNING"))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec = ModelSpec.from_dict(config["spec"])
    cfg = TrainConfig.from_dict(config["cfg"])
    manifest = config["manifest"]
    overrides = config["label_overrides"] or {}
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])

    model = spec.build(weights=False)
    init_state = config["init_state"]
    model.load_state_dict(ray.get(init_state) if isinstance(init_state, ray.ObjectRef) else init_state)
    device = ray.train.torch.get_device()
    if device.type == "cuda":  # before DDP builds its gradient buckets, so their strides match
        model.to(memory_format=torch.channels_last)
    ddp_model = ray.train.torch.prepare_model(model)  # moves to the worker's device; DDP when world > 1
    net = getattr(ddp_model, "module", ddp_model)

    per_worker = max(2, cfg.batch_size // world)
    train_shard = ray.train.get_dataset_shard("train")

    def train_batches(epoch: int) -> Iterator[dict[str, np.ndarray]]:
        for raw in train_shard.iter_batches(
            batch_size=per_worker, batch_format="numpy",
            local_shuffle_buffer_size=config["shuffle_buffer"] or None,
            local_shuffle_seed=epoch_seed(cfg.seed, epoch, rank),
        ):
            yield override_labels(decode_batch(raw, manifest), overrides)

    val_batches = None
    if rank == 0 and config["validate"]:
        val_shard = ray.train.get_dataset_shard("val")

        def val_batches(epoch: int) -> Iterator[dict[str, np.ndarray]]:
            for raw in val_shard.iter_batches(batch_size=config["eval_batch_size"], batch_format="numpy"):
                yield decode_batch(raw, manifest)

    def report(metrics: dict[str, Any], folder: Path | None) -> None:
        if folder is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)),
                             checkpoint_dir_name=f"epoch-{metrics['epoch']:05d}")
        fault_point("train:epoch")  # after the epoch's report (tests remove a node here)

    def run(resume_dir: str | None) -> list[dict[str, Any]]:
        return fit(net, cfg, train_batches, device, report, val_batches=val_batches,
                   ddp_model=ddp_model if ddp_model is not net else None, rank=rank,
                   checkpoint_every=config["checkpoint_every"], resume_dir=resume_dir)

    checkpoint = ray.train.get_checkpoint()  # set when a restarted worker group resumes
    if checkpoint is None:
        return run(None)
    with checkpoint.as_directory() as folder:
        return run(folder)


def train_with_ray(
    spec: ModelSpec,
    cfg: TrainConfig,
    manifest_dir: str | os.PathLike,
    labeled_ids: Collection[str],
    out_dir: str | os.PathLike,
    init_checkpoint: str | os.PathLike | None = None,
    *,
    storage_path: str | None = None,
    run_name: str | None = None,
    num_workers: int = 2,
    use_gpu: bool = False,
    cpus_per_worker: float = 0.5,
    max_failures: int = 2,
    validate: bool = True,
    checkpoint_every: int = 1,
    eval_batch_size: int = 64,
    shuffle_buffer: int = 1000,
    torch_threads: int | None = None,
    label_overrides: Mapping[str, Sequence[int]] | None = None,
) -> TrainResult:
    """Train on the pool rows ``labeled_ids`` with ``num_workers`` data-parallel Ray Train workers.

    Same model and loop as ``raydal.training.train_in_process``; the global batch
    ``cfg.batch_size`` is split across workers (``batch_size // num_workers``
    each, at least 2), LL pairs are drawn within each worker's batch. Rank 0
    validates on the ``val`` split when ``validate`` (every ``cfg.eval_every``
    epochs and after the last).

    ``storage_path``: where Ray persists checkpoints (local path or URI such as
    ``s3://bucket/prefix``; default ``out_dir/ray``); ``run_name``: prefix of
    the Ray run's name, made unique per call (Ray silently resumes a reused
    name). ``cpus_per_worker`` 0.5 leaves room for the Ray Data read tasks on
    small machines. ``max_failures``: worker-group restarts, each resuming from
    the last checkpoint (written every ``checkpoint_every`` epochs).
    ``label_overrides``: id -> class indices replacing archive labels (human mode).

    Returns ``TrainResult`` with ``checkpoint_dir = out_dir/checkpoint`` (the
    last epoch's model, readable by ``load_checkpoint``) and rank 0's history.
    """
    import ray
    import ray.train
    from ray.data.expressions import col
    from ray.train.torch import TorchTrainer

    from raydal.data.shards import load_manifest
    from raydal.distributed.session import ensure_ray

    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise ConfigError(f"The 'num_workers' parameter of train_with_ray must be an int >= 1. Got {num_workers!r} instead.")
    if not isinstance(cpus_per_worker, (int, float)) or cpus_per_worker <= 0:
        raise ConfigError(f"The 'cpus_per_worker' parameter of train_with_ray must be a number > 0. Got {cpus_per_worker!r} instead.")
    if not isinstance(max_failures, int) or max_failures < -1:
        raise ConfigError(f"The 'max_failures' parameter of train_with_ray must be an int >= -1 (-1: retry forever). Got {max_failures!r} instead.")
    if not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1:
        raise ConfigError(
            f"The 'checkpoint_every' parameter of train_with_ray must be an int >= 1 (the result is read from "
            f"the last checkpoint). Got {checkpoint_every!r} instead."
        )
    ids = sorted({str(i) for i in labeled_ids})
    if len(ids) < 2 * num_workers:
        raise ConfigError(
            f"train_with_ray needs at least 2 labeled samples per worker: got {len(ids)} for {num_workers} "
            "workers. Label more samples or use fewer workers."
        )
    manifest = load_manifest(manifest_dir)
    if spec.num_classes != manifest.num_classes or spec.in_channels != manifest.bands:
        raise ConfigError(
            f"The ModelSpec ({spec.num_classes} classes, {spec.in_channels} bands) does not fit the shards at "
            f"{manifest.root} ({manifest.num_classes} classes, {manifest.bands} bands)."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_ray()

    model = build_initial_model(spec, cfg, init_checkpoint)
    init_state = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
    del model

    datasets = {
        "train": ray.data.read_parquet(manifest.split_files("pool"), columns=["id", "image", "labels"])
        .filter(expr=col("id").is_in(ids))
    }
    if validate:
        datasets["val"] = ray.data.read_parquet(manifest.split_files("val"), columns=["id", "image", "labels"])

    resources = {"CPU": float(cpus_per_worker)}
    if use_gpu:
        resources["GPU"] = 1.0
    name = f"{run_name or 'raydal-train'}-{uuid.uuid4().hex[:8]}"
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config=dict(
            spec=spec.to_dict(), cfg=cfg.to_dict(), manifest=manifest, init_state=init_state,
            validate=validate, checkpoint_every=checkpoint_every, eval_batch_size=eval_batch_size,
            shuffle_buffer=shuffle_buffer, torch_threads=torch_threads,
            label_overrides={str(k): list(v) for k, v in (label_overrides or {}).items()},
        ),
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            storage_path=storage_path or str((out_dir / "ray").resolve()),
            name=name,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Ray Train's per-report INFO lines would bury the AL progress in the job log.
            logging_config=ray.LoggingConfig(log_level=os.environ.get(ENV_TRAIN_LOG_LEVEL, "WARNING")),
        ),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None or not result.return_value:
        raise RaydalError(f"Ray Train run {name} finished without a checkpoint or history; see its logs under {result.path}.")

    checkpoint_dir = out_dir / CHECKPOINT_SUBDIR
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    result.checkpoint.to_directory(str(checkpoint_dir))
    (checkpoint_dir / TRAIN_STATE_FILE).unlink(missing_ok=True)  # resume state stays in storage_path
    history = list(result.return_value)
    atomic_write_json(out_dir / HISTORY_FILE, history)
    return TrainResult(checkpoint_dir, history, dict(history[-1]))
