"""The query-strategy base class and the strategy registry.

A strategy is a small class: it names the per-sample uncertainty it ranks by
(``uncertainty``), declares what that needs (``needs``), scores one batch of
model outputs (``score``) and turns pool scores into ``b`` sample ids
(``select``). The base class owns everything shared: the candidate count, the
ranking and its tie-break (by id), non-finite handling, the optional diversity
step and the random fallback. The active-learning loop only talks to this
interface and never special-cases a strategy by type::

    strategy = get_strategy("mge+clustering")
    k = strategy.candidate_count(b, m)               # 0: no scoring needed
    scores = score_pool(model, batches, strategy, k, prev_probs) if strategy.requires_scoring else None
    chosen = strategy.select(b, scores=scores, pool_ids=unlabeled_ids, m=m, seed=seed)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import numpy as np

from raydal.exceptions import ConfigError, QueryError
from raydal.query.candidates import PoolScores
from raydal.query.clustering import NITER, resolve_backend
from raydal.query.diversity import CLUSTER_FEATURES, select_diverse
from raydal.query.ranking import check_finite, rank_desc
from raydal.settings import Interval, check_value
from raydal.utils import rng as make_rng

log = logging.getLogger(__name__)

#: What a strategy may need beyond the sigmoid probabilities every scoring run yields.
KNOWN_NEEDS = frozenset({"pred_loss", "prev_probs", "embeddings"})

_REGISTRY: dict[str, Callable[..., "QueryStrategy"]] = {}


def _check_int(owner: str, name: str, value: object, minimum: int) -> int:
    return check_value(value, name, owner, Interval(int, minimum))


def random_ids(pool_ids: Sequence[str] | np.ndarray, b: int, seed: int | np.random.Generator = 0) -> list[str]:
    """``min(b, len(pool_ids))`` ids drawn uniformly without replacement.

    The ids are sorted before drawing, so the draw depends on the set of ids and
    the seed, never on the order the caller listed them in.
    """
    b = _check_int("random_ids", "b", b, 1)
    ids = np.asarray(pool_ids, dtype=str)
    # Sorted, distinct ids (the loop's unlabeled pool) are checked in one pass instead of sorted again.
    uniq = ids if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])) else np.unique(ids)
    if len(uniq) != len(ids):
        vals, counts = np.unique(ids, return_counts=True)
        raise QueryError(
            f"pool_ids holds duplicate ids (e.g. {vals[counts > 1][:3].tolist()}); pass each unlabeled id once."
        )
    take = make_rng(seed).choice(len(uniq), size=min(b, len(uniq)), replace=False)
    return uniq[take].tolist()


class QueryStrategy:
    """Base class of every query strategy.

    Subclasses set ``uncertainty`` (the name of the score they rank by; None for
    strategies that need no model, e.g. random) and ``uncertainty_needs``, and
    implement ``score``. Instances are built by the registry with their
    registered ``name`` and ``clustering`` flag.

    clustering: False = uncertainty only (take the b most uncertain, the m = 1
        ablation); True = the two-step query (cluster the m*b most uncertain).
    backend: clustering backend for the diversity step ("auto", "faiss", "torch", "sklearn").
    niter: maximum k-means iterations.
    mge_feature_norm: beyond the paper (default True, the paper's MGE): False drops the ||h||
        factor of the MGE uncertainty, leaving ||p - y_hat||.
    cluster_features: beyond the paper: the space k-means++ clusters the candidates in,
        "penultimate" (the paper: features h), "normalized" (h / ||h||) or "gradient"
        (MGE's gradient embedding (p - y_hat) h^T, C*D floats per candidate).
    """

    #: Name of the per-sample uncertainty this strategy ranks by, or None.
    uncertainty: ClassVar[str | None] = None
    #: What ``score`` needs besides ``probs``: a subset of KNOWN_NEEDS.
    uncertainty_needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        name: str,
        clustering: bool = False,
        backend: str = "auto",
        niter: int = NITER,
        mge_feature_norm: bool = True,
        cluster_features: str = "penultimate",
    ):
        if clustering and self.uncertainty is None:
            raise ConfigError(f"Strategy {name!r} has no uncertainty to cluster candidates by; use clustering=False.")
        if backend != "auto":
            resolve_backend(backend)  # unknown name or missing package: fail now, not mid-iteration
        self.name = name
        self.clustering = bool(clustering)
        self.backend = backend
        self.niter = _check_int(f"strategy {name!r}", "niter", niter, 1)
        check_value(cluster_features, "cluster_features", f"strategy {name!r}", CLUSTER_FEATURES)
        self.mge_feature_norm = bool(mge_feature_norm)
        self.cluster_features = cluster_features

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, clustering={self.clustering}, backend={self.backend!r})"

    # ------------------------------------------------------------------ what the loop asks

    @property
    def needs(self) -> frozenset[str]:
        """Everything scoring must provide: the uncertainty's needs, plus embeddings when clustering."""
        return self.uncertainty_needs | ({"embeddings"} if self.clustering else frozenset())

    @property
    def needs_loss_head(self) -> bool:
        """True when the model must be built and trained with the LL loss-prediction module."""
        return "pred_loss" in self.needs

    @property
    def requires_scoring(self) -> bool:
        """False when ``select`` works from the unlabeled ids alone (the loop skips scoring)."""
        return self.uncertainty is not None

    def ranks_by(self, has_prev_probs: bool) -> str | None:
        """The uncertainty a scoring run computes, or None when it cannot yet (TPD's first iteration)."""
        if "prev_probs" in self.needs and not has_prev_probs:
            return None
        return self.uncertainty

    def candidate_count(self, b: int, m: int = 1) -> int:
        """How many top candidates scoring must keep (with embeddings): 0, b or m*b."""
        b = _check_int(f"strategy {self.name!r}", "b", b, 1)
        m = _check_int(f"strategy {self.name!r}", "m", m, 1)
        if not self.requires_scoring:
            return 0
        return m * b if self.clustering else b

    # ------------------------------------------------------------------ scoring

    def score(self, scored: Mapping[str, np.ndarray | None], prev_probs: np.ndarray | None = None) -> np.ndarray:
        """Uncertainty of one scored batch, higher = more uncertain.

        scored: ``score_batch`` output: ``probs`` [N, C] sigmoid probabilities,
            ``embeddings`` [N, D], ``pred_loss`` [N] or None.
        prev_probs: [N, C] the previous iteration's probabilities of the same rows, or None.
        Returns: [N] float64.
        """
        raise NotImplementedError(f"Strategy {self.name!r} does not score samples.")

    # ------------------------------------------------------------------ selection

    def select(
        self,
        b: int,
        *,
        scores: PoolScores | None = None,
        pool_ids: Sequence[str] | np.ndarray | None = None,
        m: int = 1,
        seed: int = 0,
    ) -> list[str]:
        """The ids of ``min(b, pool size)`` distinct unlabeled samples to label next.

        scores: ``score_pool`` output for this strategy with k >= ``candidate_count(b, m)``;
            not needed by strategies without an uncertainty.
        pool_ids: the unlabeled ids; used by random selection (defaults to ``scores.ids``).
        m: candidate multiplier of the two-step query (ignored without clustering).
        seed: seeds random selection and k-means++.
        Returns ids ordered most uncertain first (random strategies: draw order).
        """
        owner = f"strategy {self.name!r}"
        b = _check_int(owner, "b", b, 1)
        m = _check_int(owner, "m", m, 1)
        if not self.requires_scoring:
            return random_ids(self._pool_ids(pool_ids, scores), b, seed)
        if scores is None:
            raise QueryError(
                f"Strategy {self.name!r} ranks by {self.uncertainty!r} uncertainty: pass "
                f"scores=score_pool(model, batches, strategy, k=strategy.candidate_count(b, m))."
            )
        if scores.uncertainty_name is None and "prev_probs" in self.needs:
            # First iteration of a strategy that compares with the previous model: the paper samples at random.
            log.info("Strategy %r has no previous predictions yet: selecting %d samples at random.", self.name, b)
            return random_ids(self._pool_ids(pool_ids, scores), b, seed)
        if scores.uncertainty_name != self.uncertainty:
            raise QueryError(
                f"Strategy {self.name!r} ranks by {self.uncertainty!r} but the scores hold "
                f"{scores.uncertainty_name!r}: score the pool with this strategy."
            )
        wanted = min(self.candidate_count(b, m), len(scores.ids))
        if len(scores.cand_ids) < wanted:
            raise QueryError(
                f"Strategy {self.name!r} needs the top {wanted} candidates but the scores keep "
                f"{len(scores.cand_ids)}: score with k=strategy.candidate_count(b={b}, m={m})."
            )
        check_finite(scores.cand_uncertainty, f"{self.uncertainty} uncertainty", scores.cand_ids)
        order = rank_desc(scores.cand_uncertainty, scores.cand_ids)
        ids = np.asarray(scores.cand_ids)[order]
        if not self.clustering:
            return ids[:b].tolist()
        # the gradient space reads the candidates' probabilities from the pool's (K*C floats)
        probs = scores.candidate_probs()[order] if self.cluster_features == "gradient" else None
        picks = select_diverse(
            np.asarray(scores.cand_uncertainty)[order],
            np.asarray(scores.cand_embeddings)[order],
            b,
            m,
            seed,
            backend=self.backend,
            niter=self.niter,
            space=self.cluster_features,
            probs=probs,
        )
        return ids[picks].tolist()

    @staticmethod
    def _pool_ids(pool_ids, scores) -> np.ndarray:
        if pool_ids is not None:
            return np.asarray(pool_ids, dtype=str)
        if scores is not None:
            return np.asarray(scores.ids, dtype=str)
        raise QueryError("Random selection needs the unlabeled ids: pass pool_ids=[...].")


# ---------------------------------------------------------------------- registry


def register_strategy(name: str, **defaults) -> Callable[[type[QueryStrategy]], type[QueryStrategy]]:
    """Class decorator: register ``cls`` under ``name`` with constructor ``defaults``.

    Stack it to register one class under several names, e.g. ``"mge"`` and
    ``"mge+clustering"`` (``clustering=True``).
    """

    def deco(cls: type[QueryStrategy]) -> type[QueryStrategy]:
        if name in _REGISTRY:
            raise ConfigError(f"A query strategy named {name!r} is already registered; pick another name.")
        unknown = cls.uncertainty_needs - KNOWN_NEEDS
        if unknown:
            raise ConfigError(
                f"Strategy {name!r} declares unknown needs {sorted(unknown)}; known: {sorted(KNOWN_NEEDS)}."
            )
        _REGISTRY[name] = functools.partial(cls, name=name, **defaults)
        return cls

    return deco


def _registry() -> dict[str, Callable[..., "QueryStrategy"]]:
    """The registered strategies: every module of ``raydal.query`` is imported first, so a new
    strategy is its module with ``@register_strategy`` alone."""
    from raydal.utils import import_submodules

    import_submodules("raydal.query")
    return _REGISTRY


def list_strategies() -> list[str]:
    """Names of all registered strategies, sorted."""
    return sorted(_registry())


def get_strategy(name: "str | QueryStrategy", **kwargs) -> QueryStrategy:
    """A new strategy instance by registered name (an instance is returned as is).

    kwargs: constructor overrides, e.g. ``backend="torch"``.
    Raises ConfigError listing the valid names for an unknown one.
    """
    if isinstance(name, QueryStrategy):
        return name
    try:
        factory = _registry()[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown query strategy {name!r}. Valid names: {', '.join(list_strategies())}.") from None
    return factory(**kwargs)
