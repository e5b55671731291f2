"""Where the loop's heavy work runs: the executor interface, its registry, the in-process executor.

An executor trains on a labeled set, evaluates a checkpoint and runs a query. The
loop only talks to this interface, so the same loop runs on a laptop, on a GPU
box without Ray, and on a Ray cluster. Executors come from one registry, like the
query strategies: ``get_executor(config.executor, config)``. ``"local"`` runs in
this process; ``"ray"`` (``raydal.distributed.executor.RayExecutor``) is registered
by its import path, so code that never asks for it never imports Ray.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from raydal.config import ALConfig
from raydal.exceptions import ConfigError, QueryError
from raydal.faults import fault_point


@dataclass
class QueryResult:
    """What a query returns to the loop.

    Attributes:
        selected: the b chosen ids.
        selected_probs: id -> [C] probabilities of the current model (for export).
        pool_ids, pool_probs: [N] ids and [N, C] probabilities of the scored pool
            (kept for TPD's next round and for reports); None when not scored.
        uncertainty_name, pool_uncertainty, pool_feature_norm: what the strategy ranked by,
            its [N] scores and the [N] feature norms ||h|| of the scored pool, for the query
            diagnostics (``raydal.query.diagnostics``); None where not computed or recorded.
    """

    selected: list[str]
    selected_probs: dict[str, list[float]] = field(default_factory=dict)
    pool_ids: np.ndarray | None = None
    pool_probs: np.ndarray | None = None
    score_seconds: float = 0.0
    select_seconds: float = 0.0
    uncertainty_name: str | None = None
    pool_uncertainty: np.ndarray | None = None
    pool_feature_norm: np.ndarray | None = None

    @classmethod
    def from_scores(
        cls,
        selected: list[str],
        scores,
        score_seconds: float,
        select_seconds: float,
        predicted: dict[str, list[float]] | None = None,
    ) -> "QueryResult":
        """The result of a query that selected ``selected`` from ``scores`` (a ``PoolScores``,
        or None for strategies that score nothing; then ``predicted`` holds their probabilities)."""
        if scores is not None:
            from raydal.al.poolids import positions

            rows = positions(scores.ids, selected)  # scores.ids is sorted: a binary search, no dict of the pool
            if (rows < 0).any():
                raise QueryError(
                    f"The selection holds ids the scored pool lacks, e.g. "
                    f"{selected[int(np.flatnonzero(rows < 0)[0])]!r}: this is a bug."
                )
            probs = dict(zip(selected, scores.probs[rows].round(6).tolist()))
            return cls(
                selected,
                probs,
                np.asarray(scores.ids),
                scores.probs,
                score_seconds,
                select_seconds,
                uncertainty_name=scores.uncertainty_name,
                pool_uncertainty=scores.uncertainty,
                pool_feature_norm=scores.feature_norm,
            )
        return cls(selected, predicted or {}, None, None, score_seconds, select_seconds)


class Executor(ABC):
    """The executor interface, and what every executor shares: dataset, model spec, strategy."""

    def __init__(self, config: ALConfig):
        from raydal.data.shards import load_manifest
        from raydal.query import get_strategy

        self.config = config
        self.manifest = load_manifest(config.shards_dir)
        self.strategy = get_strategy(
            config.strategy,
            backend=config.clustering_backend,
            mge_feature_norm=config.mge_feature_norm,
            cluster_features=config.cluster_features,
        )
        self._pool_ids: np.ndarray | None = None
        #: Progress sink; the loop points it at its own.
        self.log: Callable[[str], None] = print

    def pool_index(self) -> np.ndarray:
        """The pool's ids sorted ascending and packed (``raydal.al.poolids.pack_ids``, 1 byte a character),
        read once: the loop finds ids in it by binary search and keeps positions, never sets of ids."""
        if self._pool_ids is None:
            from raydal.al.poolids import pack_ids, sorted_ids
            from raydal.data.shards import read_ids

            self._pool_ids = pack_ids(
                sorted_ids(read_ids(self.manifest, "pool"), f"the pool of {self.config.shards_dir}")
            )
        return self._pool_ids

    def pool_ids(self) -> np.ndarray:
        """The pool's ids, str [N] sorted ascending."""
        from raydal.al.poolids import unpack_ids

        return unpack_ids(self.pool_index())

    def model_spec(self):
        """The model every iteration trains: with the LL module only where the strategy
        ranks by it, or everywhere when ``config.ll_module == "on"`` (ablation)."""
        from raydal.training import ModelSpec

        m = self.manifest
        return ModelSpec(
            backbone=self.config.backbone,
            num_classes=len(m.classes),
            in_channels=m.bands,
            weights=self.config.weights,
            ll=self.config.ll_module == "on" or self.strategy.needs_loss_head,
        )

    def train_config(self, seed: int):
        from dataclasses import replace

        return replace(self.config.train_config(), seed=seed)

    @property
    def amp(self) -> str:
        """The training's precision mode; evaluation and pool scoring use the same one."""
        return self.config.train_config().amp

    # -- the interface ----------------------------------------------------------
    @abstractmethod
    def train(
        self,
        labeled_ids: list[str],
        label_overrides: dict[str, list[int]],
        out_dir: str,
        init_checkpoint: str | None,
        seed: int,
    ) -> str:
        """Train on ``labeled_ids`` (``label_overrides``: annotators' labels) into ``out_dir``;
        returns the checkpoint folder."""

    @abstractmethod
    def evaluate(self, checkpoint: str, split: str) -> dict[str, Any]:
        """Metrics of ``checkpoint`` on ``split`` (``multilabel_metrics`` keys)."""

    @abstractmethod
    def query(
        self,
        checkpoint: str,
        unlabeled_ids: np.ndarray | None,
        labeled_ids: list[str],
        b: int,
        prev_probs: tuple[np.ndarray, np.ndarray] | None,
        seed: int,
    ) -> QueryResult:
        """Score the unlabeled pool (if the strategy needs it) and select ``b`` ids.

        ``unlabeled_ids``: str [N] sorted ascending, what random selection draws from; None
        when the strategy ranks by an uncertainty (the scores then hold the unlabeled ids).
        ``prev_probs``: ``(ids [N], probs [N, C])`` of the previous scoring pass (TPD)."""

    def checkpoint_stored(self, local: str, stored: str) -> None:
        """Called by the loop when the checkpoint ``train`` returned (``local``) was uploaded to
        cluster storage as ``stored`` (a URI) and the local copy removed: later ``evaluate`` and
        ``query`` calls name ``stored``. The default does nothing."""

    def release(self) -> None:
        """Free what the executor keeps between calls (the Ray executor's worker group); the loop
        calls it when a run ends, fails or waits for labels. The next call starts afresh. The
        default does nothing."""

    def plan_query(self, labeled_ids: list[str], b: int, prev_probs: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Called by the loop before ``train`` when a query on the trained model follows, with its inputs.

        An executor may then score the pool in the same pass as training (the Ray
        executor does: one worker-group start per iteration); ``query`` must return
        the same result either way. The default does nothing."""

    # -- shared query logic ----------------------------------------------------
    def candidate_count(self, b: int) -> int:
        """How many top candidates (with embeddings) scoring keeps: b, m*b, or 0."""
        return self.strategy.candidate_count(b, self.config.m)

    def _select(self, scores, unlabeled_ids: np.ndarray | None, b: int, seed: int) -> tuple[list[str], float]:
        t0 = time.perf_counter()
        selected = self.strategy.select(b, scores=scores, pool_ids=unlabeled_ids, m=self.config.m, seed=seed)
        return [str(s) for s in selected], time.perf_counter() - t0


# ---------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Entry:
    target: "type[Executor] | str"  # the class, or "module:Class" imported on first use
    needs_ray: bool


_REGISTRY: dict[str, _Entry] = {}


def register_executor(name: str, target: "type[Executor] | str | None" = None, *, needs_ray: bool = False):
    """Register an executor class under ``name``.

    As a decorator: ``@register_executor("local")``. With ``target`` a ``"module:Class"``
    string, the module is imported only when the executor is asked for (how ``"ray"`` is
    registered here without importing Ray). ``needs_ray``: runs must start Ray and run the
    trial in a driver actor (``raydal run`` does).
    """

    def add(cls: "type[Executor] | str"):
        if name in _REGISTRY and _REGISTRY[name].target != cls:
            raise ConfigError(f"An executor named {name!r} is already registered; pick another name.")
        _REGISTRY[name] = _Entry(cls, needs_ray)
        return cls

    return add if target is None else add(target)


def list_executors() -> list[str]:
    """Names ``get_executor`` accepts, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown executor {name!r}. Valid names: {', '.join(list_executors())}.") from None


def executor_needs_ray(name: str) -> bool:
    """Whether executor ``name`` runs on Ray (the run starts Ray and a driver actor)."""
    return _entry(name).needs_ray


def executor_class(name: str) -> "type[Executor]":
    """The class registered as ``name`` (imported now when registered by path)."""
    target = _entry(name).target
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target


def get_executor(name: str, config: ALConfig) -> "Executor":
    """A new executor ``name`` for the run ``config``; ConfigError listing the valid names."""
    return executor_class(name)(config)


@register_executor("local")
class LocalExecutor(Executor):
    """Trains, evaluates and scores in this process (CUDA when present)."""

    def train(self, labeled_ids, label_overrides, out_dir, init_checkpoint, seed):
        """Loads the labeled set into memory (shuffled per epoch); the Ray executor streams it."""
        from raydal.data.shards import override_labels, read_split
        from raydal.training import train_in_process

        cfg = self.train_config(seed)
        data = read_split(self.manifest, "pool", ids=list(labeled_ids))
        data = override_labels(data, label_overrides)
        result = train_in_process(
            self.model_spec(),
            cfg,
            data,
            val_batches=None,
            out_dir=out_dir,
            init_checkpoint=init_checkpoint,
            on_epoch=self._log_epoch,
        )
        return str(result.checkpoint_dir)

    def _log_epoch(self, metrics: dict[str, Any]) -> None:
        """One line per epoch: long trainings show progress."""
        fault_point("train:mid")  # an epoch done, the checkpoint not written yet
        epochs = self.config.train_config().epochs
        if epochs >= 10 and metrics["epoch"] % max(1, epochs // 10) and metrics["epoch"] != epochs:
            return  # about ten lines per training
        self.log(
            f"  epoch {metrics['epoch']}/{epochs} loss {metrics.get('train_loss', float('nan')):.4f} "
            f"({metrics.get('seconds', 0):.1f}s)"
        )

    def evaluate(self, checkpoint, split):
        from raydal.models import load_checkpoint
        from raydal.training import evaluate
        from raydal.training.shares import evaluation_rows, iter_share_batches
        from raydal.utils import default_device

        if not self.manifest.splits.get(split, {}).get("count"):  # e.g. a folder archive without test labels
            from raydal.training.metrics import empty_metrics

            return empty_metrics(self.manifest.num_classes)
        rows, recorded = evaluation_rows(self.manifest, split, self.config.eval_max_samples)  # all, or a subsample
        device = default_device()
        model = load_checkpoint(checkpoint, device=device)
        batches = iter_share_batches(self.manifest, rows, self.config.score_batch_size)
        return dict(
            evaluate(model, batches, device, threshold=self.config.train_config().threshold, amp=self.amp), **recorded
        )

    def query(self, checkpoint, unlabeled_ids, labeled_ids, b, prev_probs, seed):
        from raydal.data.shards import iter_batches
        from raydal.models import load_checkpoint
        from raydal.query.scoring import score_pool
        from raydal.utils import default_device

        scores = None
        t_score = 0.0
        if self.strategy.requires_scoring:
            t0 = time.perf_counter()
            device = default_device()
            model = load_checkpoint(checkpoint, device=device)
            batches = iter_batches(self.manifest, "pool", self.config.score_batch_size, exclude=set(labeled_ids))
            scores = score_pool(
                model,
                batches,
                self.strategy,
                k=self.candidate_count(b),
                prev_probs=prev_probs,
                device=device,
                amp=self.amp,
            )
            t_score = time.perf_counter() - t0
        fault_point("score:end")
        selected, t_select = self._select(scores, unlabeled_ids, b, seed)
        return QueryResult.from_scores(
            selected, scores, t_score, t_select, self._predict_missing(checkpoint, selected, scores)
        )

    def _predict_missing(self, checkpoint, ids, scores) -> dict[str, list[float]] | None:
        if scores is not None:
            return None
        from raydal.data.shards import iter_batches
        from raydal.models import load_checkpoint
        from raydal.query.scoring import score_batch
        from raydal.utils import default_device

        device = default_device()
        model = load_checkpoint(checkpoint, device=device)
        out: dict[str, list[float]] = {}
        for batch in iter_batches(self.manifest, "pool", self.config.score_batch_size, ids=ids):
            probs = score_batch(model, batch["image"], device, amp=self.amp)["probs"]
            out.update({sid: p.tolist() for sid, p in zip(batch["id"], probs)})
        return out


register_executor("ray", "raydal.distributed.executor:RayExecutor", needs_ray=True)
