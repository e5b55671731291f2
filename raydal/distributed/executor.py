"""The Ray executor: one Ray Train job per AL iteration trains and evaluates; the pool is scored
in its workers or on a Ray Data actor pool of its own size.

The driver actor calls it through the same interface as the in-process executor
(``raydal.al.executor``), so the loop does not know where work runs. Before
``train`` the loop tells the executor which query follows (``plan_query``);
the executor then runs one ``train_with_ray`` that, after training, evaluates
val and test in the same workers, where the model already is. Every such job
of a run goes to one worker group kept from iteration to iteration
(``ALConfig.keep_workers``, ``raydal.distributed.workers``), started by the
first and handed back by ``release`` (the loop calls it when a run ends, fails
or waits for labels); ``--no-keep-workers`` starts a group per iteration.

Where the pool is scored (``ALConfig.score_workers``):

- ``0``: in the training workers too, after evaluation (``PoolScoring``): an
  iteration starts one worker group and no scoring actors, and scoring runs on
  ``num_workers`` processes. The scores are also written next to the checkpoint
  (``POOL_SCORES_FILE``), keyed by what they depend on (strategy, k, labeled
  set, previous probabilities): a run killed between training and query
  resumes with the very same scores. Without them (a remote state store, an
  executor that was not told the query, a changed input) ``query`` scores on
  warm actors (``score_pool_ray``, ``score_concurrency`` of them).
- ``N > 0``: ``query`` streams the pool through N Ray Data actors
  (``raydal.distributed.score_data.score_pool_data``), sized apart from
  training: training keeps the paper's batch on ``num_workers`` while scoring
  uses every GPU (or CPU) the cluster lends. Its results do not depend on N,
  so a resumed run scores again and gets the same bits.

``evaluate`` falls back to rank 0 of the kept group, or else a Ray task (a GPU
one with ``use_gpu``), when the run did not evaluate; so do the predictions of a
strategy that scores nothing. The driver never loads a model, so it imports no
torch.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al.executor import LocalExecutor, QueryResult
from raydal.al.poolids import pack_ids, prev_probs_digest, unpack_ids
from raydal.constants import POOL_SCORES_FILE


def _local_call(config: dict, method: str, *args) -> Any:
    """``LocalExecutor(config).<method>(*args)``, run in a Ray task: the model is loaded there, not in the driver."""
    from raydal.config import ALConfig

    return getattr(LocalExecutor(ALConfig.from_dict(config)), method)(*args)


def query_key(strategy: str, k: int, labeled_ids, prev_probs) -> str:
    """A digest of what pool scores depend on besides the model: equal keys, same scores."""
    h = hashlib.sha256(json.dumps([strategy, int(k), sorted(str(i) for i in labeled_ids)]).encode())
    if prev_probs is not None:
        h.update(prev_probs_digest(prev_probs))
    return h.hexdigest()[:32]


def save_pool_scores(path: Path, key: str, scores) -> None:
    """Write ``PoolScores`` and its ``query_key`` to one .npz (atomic rename)."""
    tmp = path.with_suffix(".tmp.npz")
    arrays = dict(
        key=np.array(key),
        ids=pack_ids(scores.ids),
        probs=scores.probs,
        cand_ids=pack_ids(scores.cand_ids),
        cand_uncertainty=scores.cand_uncertainty,
        cand_embeddings=scores.cand_embeddings,
        name=np.array(scores.uncertainty_name or ""),
    )
    if scores.uncertainty is not None:
        arrays["uncertainty"] = scores.uncertainty
    if scores.feature_norm is not None:
        arrays["feature_norm"] = scores.feature_norm
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_pool_scores(path: "str | Path", key: str):
    """The ``PoolScores`` saved at ``path`` (a local path or a storage URI) under ``key``, or
    None (no file, another key)."""
    import io

    from raydal.query.scoring import PoolScores
    from raydal.utils import file_exists, read_bytes

    if not file_exists(path):
        return None
    with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as f:
        if str(f["key"]) != key:
            return None
        return PoolScores(
            ids=unpack_ids(f["ids"]),
            probs=f["probs"],
            uncertainty_name=str(f["name"]) or None,
            uncertainty=f["uncertainty"] if "uncertainty" in f else None,
            cand_ids=unpack_ids(f["cand_ids"]),
            cand_uncertainty=f["cand_uncertainty"],
            cand_embeddings=f["cand_embeddings"],
            feature_norm=f["feature_norm"] if "feature_norm" in f else None,
        )


def _beside(checkpoint: str, name: str) -> str:
    """``name`` in the folder that holds ``checkpoint`` (a local path or a storage URI)."""
    from raydal.utils import is_uri

    if is_uri(checkpoint):
        return f"{str(checkpoint).rstrip('/').rpartition('/')[0]}/{name}"
    return str(Path(checkpoint).parent / name)


class RayExecutor(LocalExecutor):
    """Trains, evaluates and scores in one ``train_with_ray`` job per iteration, on a kept worker group.

    Selection (k-means++ on m*b candidates) runs in the driver: its input is
    O(m*b*D), whatever the pool size.
    """

    def __init__(self, config):
        super().__init__(config)
        self._planned: dict[str, Any] | None = None
        #: The last run's checkpoint, evaluations and (key, scores).
        self._round: dict[str, Any] = {}
        #: The worker group kept between iterations (``keep_workers``), started by the first ``train``.
        self._workers = None
        #: A local folder for a kept group's Ray storage when the state dir is a URI.
        self._scratch: str | None = None

    def release(self):
        import shutil

        if self._workers is not None:
            self._workers.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _kept_storage(self) -> str | None:
        """Ray Train's storage for a kept group when ``storage_path`` is not set: the state dir's
        ``ray/`` (a group outlives the iteration whose checkpoint folder would hold it), or, for
        a state dir in cluster storage, a local temporary folder removed by ``release``."""
        import tempfile

        from raydal.utils import is_uri

        if not self.config.keep_workers:
            return None  # next to each iteration's checkpoint
        if not is_uri(self.config.state_dir):
            return str((Path(self.config.state_dir) / "ray").resolve())
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="raydal-ray-")
        return self._scratch

    def _kept_workers(self):
        if not self.config.keep_workers:
            return None
        if self._workers is None:
            from raydal.distributed.workers import KeptWorkerGroup

            self._workers = KeptWorkerGroup()
        return self._workers

    def plan_query(self, labeled_ids, b, prev_probs):
        self._planned = dict(labeled=list(labeled_ids), b=b, prev=prev_probs)

    def train(self, labeled_ids, label_overrides, out_dir, init_checkpoint, seed):
        from raydal.distributed.train import PoolScoring, train_with_ray

        cfg = self.config
        plan, self._planned = self._planned, None
        score, key = None, None
        if (
            plan is not None
            and self.strategy.requires_scoring
            and cfg.score_workers == 0
            and sorted(plan["labeled"]) == sorted(labeled_ids)
        ):
            k = self.candidate_count(plan["b"])
            score = PoolScoring(self.strategy, k, plan["prev"], cfg.score_batch_size)
            key = query_key(cfg.strategy, k, labeled_ids, plan["prev"])
        result = train_with_ray(
            self.model_spec(),
            self.train_config(seed),
            cfg.shards_dir,
            labeled_ids,
            out_dir,
            init_checkpoint=init_checkpoint,
            storage_path=cfg.storage_path or self._kept_storage(),
            run_name=f"raydal-{cfg.fingerprint()}",
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            cpus_per_worker=cfg.cpus_per_worker,  # None: train_with_ray's share, one cluster CPU left free
            validate=False,  # the loop records val and test of the final model
            eval_batch_size=cfg.score_batch_size,
            eval_max_samples=cfg.eval_max_samples,
            label_overrides=label_overrides or None,
            # splits without labeled rows (a folder archive's test) get LocalExecutor's empty metrics
            evaluate_splits=tuple(s for s in ("val", "test") if self.manifest.splits.get(s, {}).get("count")),
            score=score,
            workers=self._kept_workers(),
        )
        checkpoint = str(result.checkpoint_dir)
        self._round = dict(checkpoint=checkpoint, evaluations=result.evaluations)
        if result.pool_scores is not None:
            save_pool_scores(Path(out_dir) / POOL_SCORES_FILE, key, result.pool_scores)
            self._round.update(
                key=key, scores=result.pool_scores, score_seconds=result.metrics.get("score_seconds", 0.0)
            )
        return checkpoint

    def checkpoint_stored(self, local, stored):
        """The loop uploaded this run's checkpoint: its evaluations and pool scores are now
        asked for under ``stored`` (no second evaluation or scoring pass)."""
        if self._round.get("checkpoint") == local:
            self._round["checkpoint"] = stored

    def evaluate(self, checkpoint, split):
        if self._round.get("checkpoint") == checkpoint and split in self._round["evaluations"]:
            return self._round["evaluations"][split]
        return self._in_task("evaluate", checkpoint, split)

    def _in_task(self, method: str, *args) -> Any:
        """Run ``LocalExecutor.<method>(checkpoint, ...)`` (``args``) on rank 0 of the kept worker
        group, or else in a Ray task (a GPU one with ``use_gpu``): the driver imports no torch, and
        a kept group's CPUs are not asked for twice."""
        import ray

        from raydal.utils import normal_location

        # absolute locations: Ray Train runs its workers in a folder of its own, a task may run elsewhere
        config = self.config.to_dict()
        for key in ("shards_dir", "state_dir", "weights"):
            if config.get(key):
                config[key] = normal_location(config[key])
        checkpoint, *rest = args
        args = (normal_location(checkpoint), *rest)
        if self._workers is not None and self._workers.started:
            return self._workers.call(config, method, *args)
        task = ray.remote(num_gpus=1 if self.config.use_gpu else 0, num_cpus=1)(_local_call)
        return ray.get(task.remote(config, method, *args))

    def _predict_missing(self, checkpoint, ids, scores):
        return None if scores is not None else self._in_task("_predict_missing", checkpoint, list(ids), None)

    def _scores_of_this_run(self, checkpoint: str, key: str):
        """The fused run's scores for ``checkpoint`` under ``key`` (memory, then disk), or None."""
        if self._round.get("checkpoint") == checkpoint and self._round.get("key") == key:
            return self._round["scores"]
        return load_pool_scores(_beside(checkpoint, POOL_SCORES_FILE), key)

    def query(self, checkpoint, unlabeled_ids, labeled_ids, b, prev_probs, seed):
        cfg = self.config
        scores, t_score = None, 0.0
        if self.strategy.requires_scoring:
            k = self.candidate_count(b)
            if cfg.score_workers == 0:
                scores = self._scores_of_this_run(checkpoint, query_key(cfg.strategy, k, labeled_ids, prev_probs))
            if scores is not None:
                t_score = self._round.get("score_seconds", 0.0) if self._round.get("scores") is scores else 0.0
            else:
                t0 = time.perf_counter()
                scores = self._score(checkpoint, labeled_ids, k, prev_probs)
                t_score = time.perf_counter() - t0
        selected, t_select = self._select(scores, unlabeled_ids, b, seed)
        return QueryResult.from_scores(
            selected, scores, t_score, t_select, self._predict_missing(checkpoint, selected, scores)
        )

    def _score(self, checkpoint: str, labeled_ids, k: int, prev_probs):
        """Score the pool outside the training run: on Ray Data (``score_workers`` > 0) or warm actors."""
        cfg = self.config
        self.release()  # their CPUs (or GPUs) may be the ones a kept group holds
        common = dict(
            exclude_ids=labeled_ids,
            strategy=self.strategy,
            k=k,
            prev_probs=prev_probs,
            batch_size=cfg.score_batch_size,
            num_gpus=1 if cfg.use_gpu else 0,
            amp=self.amp,
            progress=self.log,
        )
        if cfg.score_workers > 0:
            from raydal.distributed.score_data import score_pool_data

            return score_pool_data(
                checkpoint, self.manifest, workers=cfg.score_workers, min_workers=cfg.score_workers_min, **common
            )
        from raydal.distributed.score import score_pool_ray

        return score_pool_ray(checkpoint, cfg.shards_dir, concurrency=cfg.score_concurrency, **common)
