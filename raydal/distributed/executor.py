"""The Ray executor: Ray Train trains, Ray Data scores, a Ray task evaluates on a GPU node.

The driver actor calls it through the same interface as the in-process executor
(``raydal.al.executor``), so the loop does not know where work runs.
"""

from __future__ import annotations

import time
from typing import Any

from raydal.al.executor import LocalExecutor, QueryResult


def _evaluate_remote(config: dict, checkpoint: str, split: str) -> dict[str, Any]:
    from raydal.config import ALConfig

    return LocalExecutor(ALConfig.from_dict(config)).evaluate(checkpoint, split)


class RayExecutor(LocalExecutor):
    """Trains with ``train_with_ray`` and scores with ``score_pool_ray``.

    Selection (k-means++ on m*b candidates) runs in the driver: its input is
    O(m*b*D), whatever the pool size.
    """

    def train(self, labeled_ids, label_overrides, out_dir, init_checkpoint, seed):
        from raydal.distributed.train import train_with_ray

        cfg = self.config
        result = train_with_ray(
            self.model_spec(),
            self.train_config(seed),
            cfg.shards_dir,
            labeled_ids,
            out_dir,
            init_checkpoint=init_checkpoint,
            storage_path=cfg.storage_path,
            run_name=f"raydal-{cfg.fingerprint()}",
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            cpus_per_worker=self._cpus_per_worker(),
            validate=False,  # the loop evaluates val and test itself
            label_overrides=label_overrides or None,
        )
        return str(result.checkpoint_dir)

    def _cpus_per_worker(self) -> float:
        """The configured value, or up to 1 CPU each with one cluster CPU left for Ray Data reads."""
        if self.config.cpus_per_worker is not None:
            return self.config.cpus_per_worker
        from raydal.distributed.session import cpu_share_leaving_one_free

        return cpu_share_leaving_one_free(self.config.num_workers)

    def evaluate(self, checkpoint, split):
        if not self.config.use_gpu:
            return super().evaluate(checkpoint, split)
        import ray

        task = ray.remote(num_gpus=1, num_cpus=1)(_evaluate_remote)
        return ray.get(task.remote(self.config.to_dict(), checkpoint, split))

    def query(self, checkpoint, unlabeled_ids, labeled_ids, b, prev_probs, seed):
        from raydal.distributed.score import score_pool_ray

        cfg = self.config
        scores, t_score = None, 0.0
        if self.strategy.requires_scoring:
            t0 = time.perf_counter()
            scores = score_pool_ray(
                checkpoint,
                cfg.shards_dir,
                exclude_ids=labeled_ids,
                strategy=self.strategy,
                k=self.candidate_count(b),
                prev_probs=prev_probs,
                concurrency=cfg.score_concurrency,
                batch_size=cfg.score_batch_size,
                num_gpus=1 if cfg.use_gpu else 0,
                amp=self.amp,
                progress=self.log,
            )
            t_score = time.perf_counter() - t0
        selected, t_select = self._select(scores, unlabeled_ids, b, seed)
        return QueryResult.from_scores(selected, scores, t_score, t_select,
                                       self._predict_missing(checkpoint, selected, scores))
