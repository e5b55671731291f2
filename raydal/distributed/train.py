"""The Ray Train launcher: ``raydal.training.fit`` data-parallel under a ``TorchTrainer``.

Data: no Ray Data pipeline. The driver locates the labeled rows in the pool
shards (id column only) and cuts them into one contiguous, equal-length share
per worker (``raydal.training.shares``); each worker reads its share once per
fit, decodes it into memory and shuffles it there every epoch, exactly as the
in-process launcher does with the whole set. A fit therefore reads the labeled
rows once, whatever the pool size and the number of epochs, and a restarted
worker group gets the same shares (exact resume). See docs/performance.md.

When the ``CheckpointPolicy`` says so (every 10 epochs or 5 minutes by
default, and after the last; rank 0's clock decides) every rank calls
``ray.train.report`` and rank 0 attaches a checkpoint (model + optimizer
state), so a restarted worker group resumes from the last committed
checkpoint. Other epochs make no Ray call: a report is a round trip through
Ray Train's synchronisation actor. Rank 0 prints about ten
progress lines per fit (loss, images/s, time left) to the job's log.

A run serves one job (a call of ``train_with_ray``) or, on a kept group
(``raydal.distributed.workers.KeptWorkerGroup``), every job of an AL run: its
workers take jobs from a host actor until it closes, and a restarted group
resumes the job in progress from that job's checkpoints only.

One job can do a whole AL iteration's model work: after training, the workers
evaluate ``evaluate_splits`` and score the unlabeled pool (``score``), each on
a contiguous range of rows, and rank 0 merges the parts (metrics over the
union, the global top-K candidates). The iteration then pays one worker-group
start and no scoring-actor start.

The workers build the initial model (seeded fresh init, ``spec.weights``, or the
warm-start checkpoint; every rank alike, and DDP starts from rank 0's copy):
the driver ships the bytes of a local weights file or checkpoint folder through
the object store, so the workers need no access to the driver's files and the
driver imports no torch. The workers need the shard files (a shared filesystem
or a URI such as ``s3://...``) and ``storage_path``. Each worker reads its
share in a background thread while it builds the model and joins the group.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raydal.config import ALConfig
from raydal.constants import CHECKPOINT_SUBDIR, ENV_TRAIN_LOG_LEVEL, HISTORY_FILE, TRAIN_STATE_FILE
from raydal.exceptions import ConfigError, RaydalError
from raydal.settings import Interval, check_value
from raydal.training.config import TrainConfig
from raydal.training.in_process import TrainResult
from raydal.training.policy import CheckpointPolicy
from raydal.utils import atomic_write_strict_json, is_uri

if TYPE_CHECKING:
    from raydal.distributed.workers import KeptWorkerGroup
    from raydal.models import ModelSpec

__all__ = ["PoolScoring", "train_with_ray"]


@dataclass(frozen=True)
class PoolScoring:
    """Score the unlabeled pool (the pool minus the labeled ids) in the training workers after training.

    strategy: query strategy name; k: candidates kept with embeddings
    (``strategy.candidate_count(b, m)``); prev_probs: ``(ids [N], probs [N, C])``
    of the previous scoring pass (TPD) or None; batch_size: rows per forward pass.
    """

    strategy: "str | QueryStrategy"  # noqa: F821  (an instance carries its options)
    k: int
    prev_probs: tuple[np.ndarray, np.ndarray] | None = None
    batch_size: int = ALConfig.score_batch_size


def _sync_from_rank0(net) -> None:
    """Give every rank rank 0's weights and buffers (DDP keeps BatchNorm statistics per rank)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in net.state_dict().values():
            dist.broadcast(tensor, src=0)


def _gather_to_rank0(obj: Any, rank: int, world: int) -> list[Any] | None:
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return [obj]
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def _shipped(location: str | os.PathLike | None) -> Any:
    """What the driver sends for a weights file or checkpoint folder: its bytes, or the location itself.

    A local file: ``bytes``; a local folder: ``{file name: bytes}`` (top level);
    a storage URI (every worker can read it) or None: unchanged.
    """
    if location is None or is_uri(location):
        return location
    path = Path(location)
    if path.is_dir():
        return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}
    return path.read_bytes()


def _landed(shipped: Any, folder: Path, name: str) -> str | None:
    """Where ``_shipped``'s output lies on this worker: written under ``folder`` when sent as bytes."""
    if shipped is None or isinstance(shipped, str):
        return shipped
    target = folder / name
    if isinstance(shipped, bytes):
        target.write_bytes(shipped)
    else:
        target.mkdir()
        for file_name, data in shipped.items():
            (target / file_name).write_bytes(data)
    return str(target)


def _initial_model(spec: ModelSpec, cfg: TrainConfig, init: dict[str, Any]):
    """``build_initial_model`` in a worker, from what the driver shipped (``init``: weights, checkpoint)."""
    import dataclasses
    import tempfile

    import ray

    from raydal.training.in_process import build_initial_model

    init = ray.get(init) if isinstance(init, ray.ObjectRef) else init
    with tempfile.TemporaryDirectory(prefix="raydal-init-") as tmp:
        weights = _landed(init["weights"], Path(tmp), "weights.pt")
        checkpoint = _landed(init["checkpoint"], Path(tmp), "checkpoint")
        model = build_initial_model(dataclasses.replace(spec, weights=weights), cfg, checkpoint)
    model.spec = spec.to_dict()  # record the user's weights path, not this worker's copy
    return model


def _train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Per-worker entry of the ``TorchTrainer``: one job (``config["job"]``), or every job a kept
    group's host hands out (``config["host"]``, ``raydal.distributed.workers``) until it closes.

    Rank 0 returns (one job) or sends the host (kept group) the job's output: history,
    evaluations and pool scores, or a ``call`` job's value.
    """
    import ray
    import ray.train

    # This process only trains: its root logger decides what Ray Train's per-report INFO
    # lines (a logger named by file path, outside RunConfig's logging_config) print.
    logging.getLogger().setLevel(os.environ.get(ENV_TRAIN_LOG_LEVEL, "WARNING"))
    if "job" in config:
        return _run_job(config["job"], ray.train.get_checkpoint())
    host, done = config["host"], 0
    rank = ray.train.get_context().get_world_rank()
    while (job := ray.get(host.next_job.remote(done))) is not None:
        # A restarted group resumes the job in progress from its last checkpoint, never from an
        # earlier job's (the latest checkpoint of the run when this job has none yet).
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and not Path(checkpoint.path).name.startswith(job["checkpoint_prefix"]):
            checkpoint = None
        out = _run_job(job, checkpoint)
        if rank == 0:
            if "call" not in job:
                out["checkpoint"] = ray.train.get_checkpoint()  # this job's last, reported by this rank
            ray.get(host.finish.remote(job["id"], out))
        done = job["id"]
    return {}


def _run_job(config: dict[str, Any], checkpoint) -> dict[str, Any]:
    """One job in a worker: train (resuming from ``checkpoint``, a Ray Train checkpoint of this
    job, or None), evaluate and score; or, for a ``call`` job, run ``LocalExecutor.<method>`` on
    rank 0 (``raydal.distributed.executor``). Rank 0 returns the output, other ranks ``{}``."""
    from concurrent.futures import ThreadPoolExecutor

    import ray
    import ray.train
    import ray.train.torch
    import torch

    from raydal.data.shards import override_labels
    from raydal.faults import fault_point
    from raydal.models import ModelSpec
    from raydal.query.scoring import merge_pool_scores, score_pool
    from raydal.training.loop import EpochProgress, fit
    from raydal.training.shares import combine_evaluations, evaluation_part, iter_share_batches, read_share
    from raydal.training.sources import array_batches

    ctx = ray.train.get_context()
    if "call" in config:
        if ctx.get_world_rank() != 0:
            return {}
        from raydal.distributed.executor import _local_call

        return {"value": _local_call(*config["call"])}
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec = ModelSpec.from_dict(config["spec"])
    cfg = TrainConfig.from_dict(config["cfg"])
    manifest = config["manifest"]
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])

    # This rank's labeled rows, read once for the whole fit (in the background while the
    # model is built and the group forms) and shuffled in memory each epoch.
    with ThreadPoolExecutor(1, thread_name_prefix="raydal-share") as pool:
        share = pool.submit(read_share, manifest, config["shares"][rank], config["labeled"])
        model = _initial_model(spec, cfg, config["init"])
        device = ray.train.torch.get_device()
        if device.type == "cuda":  # before DDP builds its gradient buckets, so their strides match
            model.to(memory_format=torch.channels_last)
        ddp_model = ray.train.torch.prepare_model(
            model
        )  # to the worker's device; DDP (rank 0's weights) when world > 1
        net = getattr(ddp_model, "module", ddp_model)
        data = override_labels(share.result(), config["label_overrides"] or {})
    train_batches = array_batches(data, max(2, cfg.batch_size // world), seed=cfg.seed)
    val_batches = None
    if rank == 0 and config["validate"]:

        def val_batches(epoch: int):
            return iter_share_batches(manifest, config["validate"], config["eval_batch_size"])

    progress = EpochProgress(cfg.epochs, world) if rank == 0 and config["progress"] else None
    prefix = config.get("checkpoint_prefix", "")  # a kept group's job number: its checkpoints' names

    def report(metrics: dict[str, Any], folder: Path | None) -> None:
        line = progress(metrics) if progress is not None else None
        if line:
            print(f"[raydal] {line}", flush=True)
        # Every report is a round trip through Ray's sync actor: only at checkpoint epochs.
        if metrics["checkpointed"] and folder is None:  # not rank 0
            ray.train.report(metrics, checkpoint_dir_name=f"{prefix}epoch-{metrics['epoch']:05d}")
        elif metrics["checkpointed"]:
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(folder)),
                checkpoint_dir_name=f"{prefix}epoch-{metrics['epoch']:05d}",
            )
        fault_point("train:epoch")  # after the epoch's report (tests remove a node here)

    def run(resume_dir: str | None) -> list[dict[str, Any]]:
        return fit(
            net,
            cfg,
            train_batches,
            device,
            report,
            val_batches=val_batches,
            ddp_model=ddp_model if ddp_model is not net else None,
            rank=rank,
            checkpoint=CheckpointPolicy(**config["checkpoint"]),
            resume_dir=resume_dir,
        )

    t0 = time.perf_counter()
    if checkpoint is None:  # set when a restarted worker group resumes
        history = run(None)
    else:
        with checkpoint.as_directory() as folder:
            history = run(folder)

    out: dict[str, Any] = {"history": history, "seconds": {"fit_seconds": time.perf_counter() - t0}}
    if not config["evaluate"] and config["score"] is None:
        return out
    t0 = time.perf_counter()
    _sync_from_rank0(net)  # evaluate and score the model rank 0 saved
    part: dict[str, Any] = {"evaluations": {}, "scores": None}
    for split, parts in config["evaluate"].items():
        part["evaluations"][split] = evaluation_part(
            net, iter_share_batches(manifest, parts[rank], config["eval_batch_size"]), device, amp=cfg.amp
        )
    t1 = time.perf_counter()
    score = config["score"]
    if score is not None:
        prev = score["prev_probs"]
        prev = ray.get(prev) if isinstance(prev, ray.ObjectRef) else prev
        batches = iter_share_batches(manifest, score["rows"][rank], score["batch_size"], exclude=config["labeled"])
        part["scores"] = score_pool(
            net, _with_fault_point(batches), score["strategy"], score["k"], prev_probs=prev, device=device, amp=cfg.amp
        )
    parts = _gather_to_rank0(part, rank, world)
    if rank == 0:
        out["evaluations"] = {
            split: combine_evaluations([p["evaluations"][split] for p in parts], cfg.threshold)
            for split in config["evaluate"]
        }
        if score is not None:
            out["scores"] = merge_pool_scores([p["scores"] for p in parts], score["k"])
        out["seconds"].update(evaluate_seconds=t1 - t0, score_seconds=time.perf_counter() - t1)
    return out


def _with_fault_point(batches):
    """``batches``, passing the ``score:batch`` fault point before each (tests remove a node mid-scoring here)."""
    from raydal.faults import fault_point

    for batch in batches:
        fault_point("score:batch")
        yield batch


@dataclass
class _FitResult:
    """What the fit task hands back (Ray's ``Result`` minus what would need torch to unpickle)."""

    return_value: Any
    checkpoint: Any
    path: str | None
    error: BaseException | None


def _fit_trainer(loop_config: dict[str, Any], scaling, run) -> _FitResult:
    """``TorchTrainer(_train_worker, ...).fit()``: runs in a Ray task next to the driver (see train_with_ray)."""
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(_train_worker, train_loop_config=loop_config, scaling_config=scaling, run_config=run)
    try:
        result = trainer.fit()
    except Exception as err:  # noqa: BLE001 - Ray Train raises the run's error here; the driver re-raises it
        return _FitResult(None, None, None, err)
    return _FitResult(result.return_value, result.checkpoint, str(result.path), result.error)


def next_to_this_process() -> dict[str, Any]:
    """Ray options for the task or actor that builds a ``TorchTrainer`` for this process: on this
    node, no CPU, with the Ray Train settings this process's environment sets (Ray Train
    propagates them from its driver, which that task or actor then is)."""
    import ray
    from ray.train.v2._internal.constants import get_env_vars_to_propagate
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    env = get_env_vars_to_propagate()
    return dict(
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        runtime_env={"env_vars": env} if env else None,
    )


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
    cpus_per_worker: float | None = ALConfig.cpus_per_worker,
    max_failures: int = 2,
    validate: bool = True,
    checkpoint_every: int | None = CheckpointPolicy.every_epochs,
    eval_batch_size: int = ALConfig.score_batch_size,
    torch_threads: int | None = None,
    label_overrides: Mapping[str, Sequence[int]] | None = None,
    checkpoint_seconds: float | None = CheckpointPolicy.every_seconds,
    evaluate_splits: Sequence[str] = (),
    score: PoolScoring | None = None,
    progress: bool = True,
    eval_max_samples: int | None = None,
    workers: "KeptWorkerGroup | None" = None,
) -> TrainResult:
    """Train on the pool rows ``labeled_ids`` with ``num_workers`` data-parallel Ray Train workers.

    Same model and loop as ``raydal.training.train_in_process``; the global batch
    ``cfg.batch_size`` is split across workers (``batch_size // num_workers``
    each, at least 2), LL pairs are drawn within each worker's batch. Each
    worker trains on ``len(labeled_ids) // num_workers`` rows (the remainder,
    at most ``num_workers - 1`` rows, is left out so the workers step together).
    Rank 0 validates on the ``val`` split when ``validate`` (every
    ``cfg.eval_every`` epochs and after the last).

    ``storage_path``: where Ray persists checkpoints (local path or URI such as
    ``s3://bucket/prefix``; default ``out_dir/ray``); ``run_name``: prefix of
    the Ray run's name, made unique per call (Ray silently resumes a reused
    name). ``cpus_per_worker``: CPUs each worker reserves (default: as the
    ``cpus_per_worker`` setting's, up to 1 with one cluster CPU left for Ray Data's
    read tasks, ``raydal.distributed.session.cpu_share_leaving_one_free``).
    ``max_failures``: worker-group restarts, each resuming from the last checkpoint, written after every ``checkpoint_every``-th epoch, once
    ``checkpoint_seconds`` have passed since the last one, and after the last
    epoch (``CheckpointPolicy``; None turns a criterion off).
    ``label_overrides``: id -> class indices replacing archive labels (human mode).
    ``evaluate_splits``: splits the workers evaluate after training (e.g.
    ``("val", "test")``), into ``TrainResult.evaluations``; ``score``: score the
    unlabeled pool in the workers after training, into ``TrainResult.pool_scores``
    (what ``score_pool_ray`` returns). ``progress``: rank 0 prints progress lines.
    ``eval_max_samples``: evaluate each split on a fixed seeded subsample of at
    most this many rows (``raydal.training.shares.evaluation_rows``; the same rows
    every call; None: every row); the metrics then carry ``split_rows`` and
    ``subsample_seed`` besides ``n_samples``. ``workers``: run on this kept worker group
    (``raydal.distributed.workers``, started on its first run) instead of a group started
    and stopped for this call; the results are the same.

    Returns ``TrainResult`` with ``checkpoint_dir = out_dir/checkpoint`` (the
    last epoch's model, readable by ``load_checkpoint``) and rank 0's history.
    """
    import ray
    import ray.train

    from raydal.data.shards import load_manifest
    from raydal.distributed.session import cpu_share_leaving_one_free, ensure_ray
    from raydal.query import get_strategy
    from raydal.training.shares import (
        evaluation_rows,
        locate_ids,
        plan_labeled_shares,
        split_share,
        whole_split,
    )

    check_value(num_workers, "num_workers", "train_with_ray", Interval(int, 1))
    check_value(
        cpus_per_worker, "cpus_per_worker", "train_with_ray", Interval(float, 0, None, "neither"), nullable=True
    )
    check_value(max_failures, "max_failures", "train_with_ray", Interval(int, -1))  # -1: retry forever
    policy = CheckpointPolicy(checkpoint_every, checkpoint_seconds)
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
    for split in evaluate_splits:
        if split not in manifest.splits:
            raise ConfigError(
                f"The 'evaluate_splits' parameter of train_with_ray names {split!r}, which the shards "
                f"at {manifest.root} lack; they have {list(manifest.splits)}."
            )
    if score is not None:
        get_strategy(score.strategy)  # unknown names fail here, listing the valid ones
        check_value(score.k, "k", "PoolScoring", Interval(int, 0))
        check_value(score.batch_size, "batch_size", "PoolScoring", Interval(int, 1))
    check_value(eval_max_samples, "eval_max_samples", "train_with_ray", Interval(int, 1), nullable=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    if cpus_per_worker is None:
        cpus_per_worker = cpu_share_leaving_one_free(num_workers)

    init = ray.put(
        dict(weights=_shipped(spec.weights), checkpoint=_shipped(init_checkpoint) if cfg.warm_start else None)
    )
    evaluations = {split: evaluation_rows(manifest, split, eval_max_samples) for split in evaluate_splits}
    score_config = None
    if score is not None:
        prev = score.prev_probs
        score_config = dict(
            strategy=score.strategy,
            k=score.k,
            batch_size=score.batch_size,
            rows=split_share(whole_split(manifest, "pool"), num_workers),
            prev_probs=None if prev is None else ray.put((np.asarray(prev[0]), np.asarray(prev[1]))),
        )
    resources = {"CPU": float(cpus_per_worker)}
    if use_gpu:
        resources["GPU"] = 1.0
    name = f"{run_name or 'raydal-train'}-{uuid.uuid4().hex[:8]}"
    loop_config = dict(
        spec=spec.to_dict(),
        cfg=cfg.to_dict(),
        manifest=manifest,
        init=init,
        shares=plan_labeled_shares(locate_ids(manifest, "pool", ids), num_workers),
        labeled=ids,
        validate=whole_split(manifest, "val") if validate else None,
        checkpoint=dict(every_epochs=policy.every_epochs, every_seconds=policy.every_seconds),
        eval_batch_size=eval_batch_size,
        torch_threads=torch_threads,
        progress=progress,
        label_overrides={str(k): list(v) for k, v in (label_overrides or {}).items()},
        evaluate={split: split_share(rows, num_workers) for split, (rows, _) in evaluations.items()},
        score=score_config,
    )
    scaling = ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources)
    run = ray.train.RunConfig(
        storage_path=storage_path or str((out_dir / "ray").resolve()),
        name=name,
        failure_config=ray.train.FailureConfig(max_failures=max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        # Ray Train's per-report INFO lines would bury the AL progress in the job log.
        logging_config=ray.LoggingConfig(log_level=os.environ.get(ENV_TRAIN_LOG_LEVEL, "WARNING")),
    )
    if workers is not None:
        result = workers.run(loop_config, scaling, run)
    else:
        # Ray's torch backend imports torch wherever a TorchTrainer is built: build and fit it in a
        # task on this node, so this process (the AL driver) never imports torch.
        ref = ray.remote(_fit_trainer).options(**next_to_this_process()).remote({"job": loop_config}, scaling, run)
        try:
            result = ray.get(ref)
        except KeyboardInterrupt:
            ray.cancel(ref)
            raise
    if result.error is not None:
        raise result.error
    value = result.return_value
    if result.checkpoint is None or not value or not value.get("history"):
        raise RaydalError(
            f"Ray Train run {result.path and Path(result.path).name or name} finished without a checkpoint "
            f"or history; see its logs under {result.path}."
        )

    checkpoint_dir = out_dir / CHECKPOINT_SUBDIR
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    result.checkpoint.to_directory(str(checkpoint_dir))
    (checkpoint_dir / TRAIN_STATE_FILE).unlink(missing_ok=True)  # resume state stays in storage_path
    history = list(value["history"])
    atomic_write_strict_json(out_dir / HISTORY_FILE, history)  # a metric not computed (NaN) as null
    return TrainResult(
        checkpoint_dir,
        history,
        dict(history[-1], **value.get("seconds", {})),
        evaluations={
            split: dict(metrics, **evaluations[split][1]) for split, metrics in value.get("evaluations", {}).items()
        },
        pool_scores=value.get("scores"),
    )
