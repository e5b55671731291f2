"""Pool scoring on Ray Data: the in-process ``BlockScorer`` in an actor pool, merged on the driver.

Pipeline: ``read_parquet`` of the pool shards -> drop labeled ids (an Arrow
``not_in`` filter fused into the read tasks) -> ``map_batches(ScoringActor)``
on an actor pool (the model is loaded once per actor from the checkpoint
folder) -> the driver streams the output blocks into the same
``TopKCandidates`` as ``raydal.query.score_pool``.

Each output row carries its id, probabilities [C] and uncertainty; only rows
that enter their actor's running top-K also carry an embedding (raw float32
bytes, empty otherwise). A row in the global top-K is always in the top-K of
the rows its actor has seen, so the driver gets every candidate it needs and
never holds N x D embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from raydal.exceptions import ConfigError
from raydal.query.base import QueryStrategy, get_strategy
from raydal.query.scoring import BlockScorer, PoolScores, TopKCandidates

__all__ = ["ScoringActor", "score_pool_ray"]


class ScoringActor:
    """``map_batches`` callable class: one model per actor, scores raw shard batches.

    checkpoint_dir: a folder written by ``raydal.models.save_checkpoint``, readable on every node.
    manifest_dir: the prepared shards (for the image shape).
    strategy: name or instance; k: candidates to track.
    prev_probs: (ids [N], probs [N, C]) or an ObjectRef to it (resolved here), or None.
    device: "cpu", "cuda", ...; default CUDA when the actor was given a GPU.
    torch_threads: intra-op threads for the forward pass.
    amp: precision mode, the training's ``TrainConfig.amp`` (see ``raydal.query.score_batch``).
    """

    def __init__(
        self,
        checkpoint_dir: str,
        manifest_dir: str,
        strategy: "str | QueryStrategy",
        k: int,
        prev_probs: Any = None,
        device: str | None = None,
        torch_threads: int = 1,
        amp: str = "auto",
    ):
        import ray
        import torch

        from raydal.data.shards import load_manifest
        from raydal.models import load_checkpoint
        from raydal.utils import default_device

        if isinstance(prev_probs, ray.ObjectRef):  # constructor kwargs arrive unresolved
            prev_probs = ray.get(prev_probs)
        torch.set_num_threads(max(1, int(torch_threads)))
        dev = torch.device(device) if device else default_device()
        self.manifest = load_manifest(manifest_dir)
        self.scorer = BlockScorer(load_checkpoint(checkpoint_dir, dev), strategy, k, prev_probs, dev, amp)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """batch: shard columns (``id``, ``image``, ``labels``) as numpy.

        Returns ``id`` [n] str, ``probs`` float32 [n, C], ``uncertainty`` float64 [n]
        and ``embedding`` [n] bytes (float32 [D] for candidate rows, empty otherwise).
        """
        from raydal.data.shards import decode_batch

        decoded = decode_batch(batch, self.manifest)
        out = self.scorer(decoded["id"], decoded["image"])
        embedding = np.full(len(out["id"]), b"", dtype=object)
        embedding[np.flatnonzero(out["candidate"])] = [row.tobytes() for row in out["embeddings"]]
        return {"id": out["id"], "probs": out["probs"], "uncertainty": out["uncertainty"], "embedding": embedding}


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"The '{name}' parameter of score_pool_ray must be an int >= 1. Got {value!r} instead.")
    return int(value)


def _default_actor_cpus(concurrency: int, num_gpus: float) -> float:
    """CPUs per actor: leave one CPU of the cluster for the read tasks (they stall otherwise)."""
    from raydal.distributed.session import cpu_share_leaving_one_free

    return 1.0 if num_gpus > 0 else cpu_share_leaving_one_free(concurrency)


def score_pool_ray(
    checkpoint_dir: str | os.PathLike,
    manifest_dir: str | os.PathLike,
    exclude_ids: Collection[str] | None,
    strategy: "str | QueryStrategy",
    k: int,
    prev_probs: "Mapping[str, Any] | tuple[Any, Any] | None" = None,
    *,
    concurrency: int = 1,
    batch_size: int = 64,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    torch_threads: int | None = None,
    amp: str = "auto",
) -> PoolScores:
    """Score the unlabeled pool with Ray Data; returns what ``raydal.query.score_pool`` returns.

    checkpoint_dir: model folder (``save_checkpoint``), visible to every node.
    manifest_dir: prepared shards; the ``pool`` split is scored.
    exclude_ids: the labeled ids to skip.
    strategy, k, prev_probs: as in ``score_pool`` (k = ``strategy.candidate_count(b, m)``).
    concurrency: number of scoring actors.
    batch_size: rows per forward pass.
    num_gpus: GPUs per actor (e.g. 1 on a GPU node; the actor then runs on CUDA).
    num_cpus: CPUs per actor; default 1 with a GPU, else what leaves one CPU of
        the cluster free for reads, capped to [0.25, 1].
    torch_threads: forward-pass threads per actor; default max(1, round(num_cpus)).
    amp: precision mode, the training's ``TrainConfig.amp`` ("auto": bf16 on CUDA, "bf16", "off").
    Starts an embedded Ray when none is running (``raydal.distributed.session.ensure_ray``).
    """
    import ray
    from ray.data.expressions import col

    from raydal.data.shards import load_manifest
    from raydal.distributed.session import ensure_ray
    from raydal.training.config import check_amp

    concurrency = _positive_int("concurrency", concurrency)
    batch_size = _positive_int("batch_size", batch_size)
    if not isinstance(num_gpus, (int, float)) or num_gpus < 0:
        raise ConfigError(f"The 'num_gpus' parameter of score_pool_ray must be a number >= 0. Got {num_gpus!r} instead.")
    check_amp(amp, "score_pool_ray")
    strategy = get_strategy(strategy)
    if not ray.is_initialized():
        ensure_ray()
    manifest = load_manifest(manifest_dir)
    if num_cpus is None:
        num_cpus = _default_actor_cpus(concurrency, num_gpus)
    threads = torch_threads if torch_threads is not None else max(1, round(num_cpus))

    ds = ray.data.read_parquet(manifest.split_files("pool")).select_columns(["id", "image", "labels"])
    if exclude_ids:
        ds = ds.filter(expr=col("id").not_in(sorted(str(i) for i in exclude_ids)))
    # Streaming re-blocking to one forward batch per block: the read merges small shards into
    # one block, which would reach a single actor however many there are.
    ds = ds.repartition(target_num_rows_per_block=batch_size)
    prev_ref = None
    if prev_probs is not None:
        from raydal.query.scoring import PrevProbs

        prev = PrevProbs(prev_probs)
        prev_ref = ray.put((prev.ids, prev.probs))  # one copy in the object store, shared by the actors
    uncertainty_name = strategy.ranks_by(prev_probs is not None)
    k_eff = k if uncertainty_name is not None else 0
    ds = ds.map_batches(
        ScoringActor,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_kwargs=dict(
            checkpoint_dir=str(checkpoint_dir),
            manifest_dir=str(manifest_dir),
            strategy=strategy,
            k=k_eff,
            prev_probs=prev_ref,
            device="cuda" if num_gpus > 0 else "cpu",
            torch_threads=threads,
            amp=amp,
        ),
    )

    top = TopKCandidates(k_eff)
    ids, probs, uncs = [], [], []
    for block in ds.iter_batches(batch_format="numpy", batch_size=None):
        block_ids = np.asarray(block["id"], dtype=str)
        ids.append(block_ids)
        probs.append(np.asarray(block["probs"], dtype=np.float32).reshape(len(block_ids), -1))
        uncs.append(np.asarray(block["uncertainty"], dtype=np.float64))
        rows = [i for i, e in enumerate(block["embedding"]) if len(e)]
        if rows:
            emb = np.stack([np.frombuffer(block["embedding"][i], dtype=np.float32) for i in rows])
            top.add(block_ids[rows], uncs[-1][rows], emb)
    return PoolScores.assemble(ids, probs, uncs if uncertainty_name else None, uncertainty_name, top)
