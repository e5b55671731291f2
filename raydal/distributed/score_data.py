"""Pool scoring on Ray Data: the pool's shards streamed through an actor pool sized apart from training.

Pipeline (``score_pool_data``)::

    read_parquet(pool shards)                 local paths or s3://, read tasks spread by Ray Data
      -> filter(id not in labeled)            an Arrow expression, fused into the read tasks
      -> repartition(batch_size, strict)      blocks = the in-process forward batches, in pool order
      -> map_batches(PoolScoringActor)        N CPU or GPU actors (ActorPoolStrategy(min_size, max_size))
      -> driver: PoolScores.assemble          the same TopKCandidates merge as every other path

Each actor loads the iteration's checkpoint once (its bytes come through the
object store, so no node needs the state dir mounted) and scores with the same
``raydal.query.scoring.BlockScorer`` as in-process scoring and the training
workers. It keeps a running top-K of what it has seen and ships an embedding
only for rows that enter it: a row of the global top-K is in the top-K of any
subset holding it, so the driver gets every candidate it needs and never
holds N x D embeddings.

Same batches, same bits: with Ray Data's ordered execution, the strict
streaming repartition cuts the filtered pool into exactly the blocks of
``raydal.data.shards.iter_batches(manifest, "pool", batch_size,
exclude=labeled)``, and each block is one forward batch. A row's
probabilities depend in their last bit on the batch they are computed in;
here every row meets the same neighbours as in one process, so ids,
probabilities, uncertainties, candidates and selection are identical
(``tests/distributed/test_score_data.py``).

Faults: Ray Data restarts a dead actor and retries its batch (an actor's
running top-K starts afresh, which only lets more embeddings through), and
re-runs the read of a block lost with its node.

The driver side (``score_pool_data``) imports no torch: NumPy, pyarrow and Ray only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from raydal.config import ALConfig
from raydal.constants import META_FILE, MODEL_FILE
from raydal.query.base import QueryStrategy, get_strategy
from raydal.query.candidates import PoolScores, TopKCandidates
from raydal.query.pool import ScoringProgress
from raydal.settings import Interval, check_value, param_error

__all__ = ["PoolScoringActor", "actor_pool_sizes", "score_pool_data"]


class PoolScoringActor:
    """``map_batches`` callable class: one model per actor, one forward batch per call.

    checkpoint: {file name: bytes} of a checkpoint folder (``save_checkpoint``), or an
        ObjectRef to it (resolved here), or a folder path / URI every node can read.
    manifest: the shard set's ``Manifest`` (image shape and classes for ``decode_batch``).
    strategy, k, prev_probs, amp: as ``BlockScorer`` takes them; ``prev_probs`` may be an ObjectRef.
    device: "cpu", "cuda", ...; torch_threads: intra-op threads of the forward pass.
    """

    def __init__(
        self,
        checkpoint: Any,
        manifest: Any,
        strategy: "str | QueryStrategy",
        k: int,
        prev_probs: Any = None,
        device: str = "cpu",
        torch_threads: int = 1,
        amp: str = "auto",
    ):
        import ray
        import torch

        from raydal.query.scoring import BlockScorer

        # constructor kwargs arrive unresolved: one copy in the object store serves every actor
        if isinstance(checkpoint, ray.ObjectRef):
            checkpoint = ray.get(checkpoint)
        if isinstance(prev_probs, ray.ObjectRef):
            prev_probs = ray.get(prev_probs)
        torch.set_num_threads(max(1, int(torch_threads)))
        self.device = torch.device(device)
        self.manifest = manifest
        self.scorer = BlockScorer(_load_model(checkpoint, self.device), strategy, k, prev_probs, self.device, amp)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """batch: shard columns ``id``, ``image``, ``labels`` (one forward batch).

        Returns ``id`` [n] str, ``probs`` float32 [n, C], ``uncertainty`` float64 [n],
        ``feature_norm`` float32 [n], ``candidate`` bool [n] and ``embedding`` [n] bytes
        (float32 [D] where ``candidate``, empty elsewhere).
        """
        from raydal.data.shards import decode_batch
        from raydal.faults import fault_point

        fault_point("score:batch")  # once per batch (tests remove a node or kill the actor here)
        decoded = decode_batch(batch, self.manifest)
        out = self.scorer(decoded["id"], decoded["image"])
        embedding = np.full(len(out["id"]), b"", dtype=object)
        embedding[np.flatnonzero(out["candidate"])] = [row.tobytes() for row in out["embeddings"]]
        return {
            "id": out["id"],
            "probs": out["probs"],
            "uncertainty": out["uncertainty"],
            "feature_norm": out["feature_norm"],
            "candidate": out["candidate"],
            "embedding": embedding,
        }


def _load_model(checkpoint: Any, device):
    """The ALNet of ``checkpoint`` ({file name: bytes}, or a folder / URI) on ``device``."""
    import shutil
    import tempfile

    from raydal.models import load_checkpoint

    if not isinstance(checkpoint, Mapping):
        return load_checkpoint(checkpoint, device)
    folder = tempfile.mkdtemp(prefix="raydal-ckpt-")
    try:
        for name, data in checkpoint.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        return load_checkpoint(folder, device)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _checkpoint_bytes(checkpoint_dir: str | os.PathLike) -> dict[str, bytes]:
    """The model and meta files of a checkpoint folder (local or URI), read without torch."""
    from raydal.exceptions import ModelError
    from raydal.utils import local_dir

    folder = local_dir(checkpoint_dir)
    out = {}
    for name in (MODEL_FILE, META_FILE):
        try:
            out[name] = (folder / name).read_bytes()
        except OSError as err:
            raise ModelError(
                f"{checkpoint_dir} is not a raydal checkpoint folder: cannot read {name} ({err}). "
                "Fix: pass a folder written by raydal.models.save_checkpoint."
            ) from err
    return out


def _read_parquet(files: list[str], columns: list[str]):
    """``ray.data.read_parquet`` through Ray Data's V1 Parquet datasource.

    Ray 2.60's default (V2) lists the files with 32 footer-reader actors per read,
    whatever the file count: on a small cluster, starting them took minutes (a
    benchmark's workers import torch at start). The manifest already names every
    file, so V1's plain read tasks (one or more per file) are all this needs.
    """
    import ray

    ctx = ray.data.DataContext.get_current()
    before, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        # one read task per shard file: Ray Data would otherwise split each file into ~200 /
        # len(files) tiny blocks, each a task output to schedule and budget
        return ray.data.read_parquet(files, columns=columns, override_num_blocks=len(files))
    finally:
        ctx.use_datasource_v2 = before


def _cpu_actor_share(n: int) -> float:
    """CPUs for each of ``n`` CPU scoring actors so that two cluster CPUs stay free, in [0.25, 1].

    The read tasks and the repartition tasks each need a CPU: with every CPU held by
    actors (or all but one), the repartition task waited forever behind a read task
    whose output it was to consume (2 nodes x 4 CPUs, 8 actors).
    """
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.25, min(1.0, (total - 2.0) / n))


def actor_pool_sizes(workers: int, min_workers: int | None = None) -> tuple[int, int]:
    """(min_size, max_size) of the scoring actor pool: ``workers`` actors at most, ``min_workers``
    (default ``workers``: a fixed pool) at least. Ray Data starts the pool at its minimum and adds
    actors while batches queue and the cluster has room (an autoscaling cluster grows for them)."""
    workers = check_value(workers, "workers", "score_pool_data", Interval(int, 1))
    low = check_value(min_workers, "min_workers", "score_pool_data", Interval(int, 1), nullable=True)
    if low is not None and low > workers:
        raise param_error("min_workers", "score_pool_data", f"an int <= workers ({workers})", low)
    return (workers if low is None else low), workers


def score_pool_data(
    checkpoint_dir: str | os.PathLike,
    manifest_dir: Any,
    exclude_ids: Collection[str] | None,
    strategy: "str | QueryStrategy",
    k: int,
    prev_probs: "Mapping[str, Any] | tuple[Any, Any] | None" = None,
    *,
    workers: int = 1,
    min_workers: int | None = None,
    batch_size: int = ALConfig.score_batch_size,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    torch_threads: int | None = None,
    amp: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> PoolScores:
    """Score the unlabeled pool on a Ray Data actor pool; returns what ``raydal.query.score_pool`` returns.

    checkpoint_dir: the iteration's model folder (``save_checkpoint``; local or a URI), read
        here and shipped to the actors through the object store.
    manifest_dir: prepared shards (a folder, or a loaded ``Manifest``); the ``pool`` split is
        scored, its files read by Ray Data (local paths or ``s3://``).
    exclude_ids: the labeled ids to skip.
    strategy, k, prev_probs: as in ``score_pool`` (k = ``strategy.candidate_count(b, m)``;
        prev_probs TPD's ``(ids [N], probs [N, C])``, shipped once through the object store).
    workers, min_workers: the actor pool's largest and smallest size (``actor_pool_sizes``).
    batch_size: rows per forward pass; the batches are the in-process ones.
    num_gpus: GPUs per actor (1 on GPU nodes: the actors run on CUDA).
    num_cpus: logical CPUs per actor; default 1 with a GPU, else what leaves two CPUs of
        the cluster free for Ray Data's read and repartition tasks, in [0.25, 1].
    torch_threads: forward-pass threads per actor; default max(1, round(num_cpus)).
    amp: precision mode, the training's ``TrainConfig.amp``.
    progress: gets about ten lines "scored n/N rows, rate, time left" and a summary.
    Starts an embedded Ray when none is running (``raydal.distributed.session.ensure_ray``).
    """
    import ray
    from ray.data.expressions import col

    from raydal.data.shards import Manifest, load_manifest
    from raydal.distributed.score import _prev_arrays
    from raydal.distributed.session import ensure_ray
    from raydal.training.config import check_amp

    low, high = actor_pool_sizes(workers, min_workers)
    batch_size = check_value(batch_size, "batch_size", "score_pool_data", Interval(int, 1))
    for name, value in (("num_gpus", num_gpus), ("num_cpus", num_cpus)):
        check_value(value, name, "score_pool_data", Interval(float, 0), nullable=True)
    check_amp(amp, "score_pool_data")
    strategy = get_strategy(strategy)
    manifest = manifest_dir if isinstance(manifest_dir, Manifest) else load_manifest(manifest_dir)
    if not ray.is_initialized():
        ensure_ray()
    if num_cpus is None:
        num_cpus = 1.0 if num_gpus > 0 else _cpu_actor_share(high)
    threads = torch_threads if torch_threads is not None else max(1, round(num_cpus))
    uncertainty_name = strategy.ranks_by(prev_probs is not None)
    k = int(k) if uncertainty_name is not None else 0

    exclude = sorted({str(i) for i in exclude_ids}) if exclude_ids else []
    ds = _read_parquet(manifest.split_files("pool"), columns=["id", "image", "labels"])
    if exclude:
        ds = ds.filter(expr=col("id").not_in(exclude))
    # Blocks of exactly batch_size rows, cut from the filtered pool in shard order: each is
    # one forward batch of the in-process path (ordered execution keeps the rows in order).
    ds = ds.repartition(target_num_rows_per_block=batch_size, strict=True)
    ds.context.execution_options.preserve_order = True
    ds = ds.map_batches(
        PoolScoringActor,
        # two batches queued per actor (one running, one waiting), as on the warm-actor path: more
        # only reserves object-store budget that the reads then lack
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high, max_tasks_in_flight_per_actor=2),
        batch_size=batch_size,
        batch_format="numpy",
        zero_copy_batch=True,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_kwargs=dict(
            checkpoint=ray.put(_checkpoint_bytes(checkpoint_dir)),
            manifest=manifest,
            strategy=strategy,
            k=k,
            prev_probs=None if prev_probs is None else ray.put(_prev_arrays(prev_probs)),
            device="cuda" if num_gpus > 0 else "cpu",
            torch_threads=threads,
            amp=amp,
        ),
    )

    top = TopKCandidates(k)
    ids: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    uncs: list[np.ndarray] = []
    norms: list[np.ndarray] = []
    report = ScoringProgress(max(0, manifest.splits["pool"]["count"] - len(exclude)), progress)
    t0 = time.perf_counter()
    for block in ds.iter_batches(batch_format="numpy", batch_size=None, prefetch_batches=2):
        block_ids = np.asarray(block["id"]).astype(str)
        ids.append(block_ids)
        probs.append(np.asarray(block["probs"], dtype=np.float32).reshape(len(block_ids), -1))
        uncs.append(np.asarray(block["uncertainty"], dtype=np.float64))
        norms.append(np.asarray(block["feature_norm"], dtype=np.float32))
        rows = np.flatnonzero(block["candidate"])
        if len(rows):
            emb = np.frombuffer(b"".join(block["embedding"][rows]), dtype=np.float32).reshape(len(rows), -1)
            top.add(block_ids[rows], uncs[-1][rows], emb)
        report.update(len(block_ids))
    if progress is not None:
        total = sum(len(i) for i in ids)
        progress(
            f"  scored {total:,} rows in {time.perf_counter() - t0:.1f}s on Ray Data, "
            f"{low}-{high} actor(s) of {num_gpus:g} GPU / {num_cpus:g} CPU"
        )
    return PoolScores.assemble(
        ids, probs, uncs if uncertainty_name else None, uncertainty_name, top, feature_norm=norms
    )
