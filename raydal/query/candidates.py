"""What selection reads: the bounded top-K of candidates and the pool's scores (no torch).

``TopKCandidates`` keeps the running top-K by (uncertainty desc, id asc) with their
embeddings; ``PoolScores`` is a scored pool. Every scoring path (``raydal.query.scoring``
in process or in the Ray Train workers, ``raydal.distributed.score_data`` on Ray Data
actors, ``raydal.distributed.score`` on warm Ray actors) produces them and ``QueryStrategy.select`` (``raydal.query.base``) consumes them,
so imports run one way: ``ranking`` <- ``candidates`` <- ``base`` <- ``scoring``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raydal.exceptions import QueryError
from raydal.query.ranking import check_finite, rank_desc
from raydal.settings import Interval, check_value

__all__ = ["PoolScores", "TopKCandidates", "pack_ids", "unpack_ids"]


def pack_ids(ids: np.ndarray) -> np.ndarray:
    """Ids packed one byte a character (``S``; UTF-8 where an id is not ASCII), in the same sort order.

    What a whole pool's ids are kept and written as: 10^6 ids of 51 characters are
    51 MB instead of 204 MB as str. ``unpack_ids`` gives back the very same str array
    (UTF-8 keeps the code points' order). Packed input is returned as is.
    """
    ids = np.asarray(ids)
    if ids.dtype.kind == "S":
        return ids
    ids = ids.astype(str, copy=False)
    try:
        return ids.astype(np.bytes_)  # ASCII only: fast
    except UnicodeEncodeError:
        return np.strings.encode(ids, "utf-8")


def unpack_ids(ids: np.ndarray) -> np.ndarray:
    """str [N] from ids packed by :func:`pack_ids` (str input is returned as is)."""
    ids = np.asarray(ids)
    if ids.dtype.kind != "S":
        return ids.astype(str, copy=False)
    try:
        return ids.astype(str)  # ASCII only: fast
    except UnicodeDecodeError:
        return np.strings.decode(ids, "utf-8")


class TopKCandidates:
    """Running top-``k`` samples by (uncertainty desc, id asc), with their embeddings.

    Blocks arrive in any order (batches, Ray actors); the kept set is the same,
    and it equals the first ``k`` rows of a full sort of everything offered.
    Once ``k`` rows are kept, the worst of them is a threshold: a new row below
    it is rejected by one float comparison (and an id comparison only on an
    exact tie), so the per-block cost does not grow with ``k``. Survivors are
    buffered and merged with ``np.argpartition`` once the buffer exceeds ``k``
    rows, so memory stays O(k*D). Embeddings are optional (``embeddings=None``
    in every ``add``), which the scorers use to track only a threshold.
    """

    def __init__(self, k: int):
        self.k = check_value(k, "k", "TopKCandidates", Interval(int, 0))
        self._ids: list[np.ndarray] = []  # [0]: the kept rows (unordered), then buffered blocks
        self._unc: list[np.ndarray] = []
        self._emb: list[np.ndarray] = []
        self._rows = 0
        #: (uncertainty, id) of the worst kept row once k rows are kept; rows worse than it never enter.
        self._threshold: tuple[float, str] | None = None

    def __len__(self) -> int:
        self._prune()
        return self._rows

    def add(self, ids: np.ndarray, uncertainty: np.ndarray, embeddings: np.ndarray | None = None) -> None:
        """Offer rows: ids [n] str, uncertainty [n] (finite), embeddings [n, D] float32 or None."""
        ids = np.asarray(ids, dtype=str)
        unc = np.asarray(uncertainty, dtype=np.float64)
        if unc.shape != ids.shape:
            raise QueryError(f"TopKCandidates.add got {len(ids)} ids but uncertainty of shape {unc.shape}.")
        check_finite(unc, "uncertainty", ids)
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.ndim != 2 or len(embeddings) != len(ids):
                raise QueryError(f"TopKCandidates.add got {len(ids)} ids but embeddings of shape {embeddings.shape}.")
        if self.k == 0 or len(ids) == 0:
            return
        if (embeddings is None) != (not self._emb) and self._ids:
            raise QueryError("TopKCandidates.add: pass embeddings with every block or with none.")
        keep = self._above_threshold(ids, unc)
        if keep is not None:
            ids, unc = ids[keep], unc[keep]
            embeddings = embeddings[keep] if embeddings is not None else None
            if not len(ids):
                return
        self._ids.append(ids)
        self._unc.append(unc)
        if embeddings is not None:
            self._emb.append(embeddings)
        self._rows += len(ids)
        if self._rows > 2 * self.k:
            self._prune()

    def admits(self, ids: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
        """bool [n]: which of these rows would be in the top-k after adding them.

        Rows it rejects can never reach the final top-k of this accumulator, so
        a producer only has to ship embeddings for the admitted rows.
        """
        ids = np.asarray(ids, dtype=str)
        unc = np.asarray(uncertainty, dtype=np.float64)
        self._prune()
        if self.k == 0:
            return np.zeros(len(ids), dtype=bool)
        if self._rows + len(ids) <= self.k:
            return np.ones(len(ids), dtype=bool)
        keep = self._above_threshold(ids, unc)
        rows = np.arange(len(ids)) if keep is None else np.flatnonzero(keep)
        mask = np.zeros(len(ids), dtype=bool)
        if not len(rows):
            return mask
        kept = self._rows
        all_unc = np.concatenate([self._unc[0], unc[rows]]) if kept else unc[rows]
        all_ids = np.concatenate([self._ids[0], ids[rows]]) if kept else ids[rows]
        top = top_k_rows(all_unc, all_ids, self.k)
        mask[rows[top[top >= kept] - kept]] = True
        return mask

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids [K] str, uncertainty [K] float64, embeddings [K, D] float32 or None), most uncertain first."""
        self._prune()
        if not self._ids:
            return np.zeros(0, dtype=str), np.zeros(0), None
        order = rank_desc(self._unc[0], self._ids[0])
        return self._ids[0][order], self._unc[0][order], (self._emb[0][order] if self._emb else None)

    def _above_threshold(self, ids: np.ndarray, unc: np.ndarray) -> np.ndarray | None:
        """bool [n]: rows that rank above the worst kept row; None while fewer than k rows are kept."""
        if self._threshold is None:
            return None
        t_unc, t_id = self._threshold
        keep = unc > t_unc
        tie = unc == t_unc
        if tie.any():
            keep[tie] = ids[tie] < t_id
        return keep

    def _prune(self) -> None:
        """Merge the buffered blocks into the kept rows: the top k of both."""
        if len(self._ids) <= 1 and (self._rows <= self.k or not self._ids):
            return
        ids = np.concatenate(self._ids) if len(self._ids) > 1 else self._ids[0]
        unc = np.concatenate(self._unc) if len(self._unc) > 1 else self._unc[0]
        top = top_k_rows(unc, ids, self.k)
        self._ids, self._unc = [ids[top]], [unc[top]]
        if self._emb:
            emb = np.concatenate(self._emb) if len(self._emb) > 1 else self._emb[0]
            self._emb = [emb[top]]
        self._rows = len(top)
        if self._rows == self.k:
            kept_unc = self._unc[0]
            worst = kept_unc.min()
            self._threshold = (float(worst), str(np.sort(self._ids[0][kept_unc == worst])[-1]))


def top_k_rows(uncertainty: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Indices (unordered) of the ``k`` rows first by (uncertainty desc, id asc): ``rank_desc(...)[:k]`` as a set.

    ``np.argpartition`` finds the k-th largest value; only rows tied with it are
    ordered, by id. O(n) instead of a full sort of n rows.
    """
    n = len(uncertainty)
    if n <= k:
        return np.arange(n)
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    kth = uncertainty[np.argpartition(-uncertainty, k - 1)[k - 1]]
    above = np.flatnonzero(uncertainty > kth)
    ties = np.flatnonzero(uncertainty == kth)
    need = k - len(above)
    if len(ties) > need:
        ties = ties[np.argsort(ids[ties], kind="stable")[:need]]
    return np.concatenate([above, ties])


# ---------------------------------------------------------------------- the pool


@dataclass
class PoolScores:
    """Scores of the unlabeled pool for one strategy.

    ids: [N] str, sorted ascending.
    probs: float32 [N, C] sigmoid probabilities, aligned with ``ids`` (the next
        iteration's ``prev_probs`` for TPD: ``(ids, probs)``).
    uncertainty_name: the uncertainty ranked by ("ll", "mge", "tpd"), or None when
        none was computed (random; TPD without previous probabilities).
    uncertainty: float64 [N] aligned with ``ids``, or None.
    cand_ids: [K] str, the K most uncertain, most uncertain first (ties: id ascending).
    cand_uncertainty: float64 [K].
    cand_embeddings: float32 [K, D] the candidates' penultimate features.
    feature_norm: float32 [N] ||h||_2 of every row's penultimate features, aligned with
        ``ids`` (the query diagnostics correlate the uncertainty with it), or None where
        the scorer did not record it (pool scores saved by an earlier raydal).
    """

    ids: np.ndarray
    probs: np.ndarray
    uncertainty_name: str | None
    uncertainty: np.ndarray | None
    cand_ids: np.ndarray
    cand_uncertainty: np.ndarray
    cand_embeddings: np.ndarray
    feature_norm: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, k = len(self.ids), len(self.cand_ids)
        if self.probs.ndim != 2 or len(self.probs) != n:
            raise QueryError(f"PoolScores.probs must be [N={n}, C]. Got {self.probs.shape}.")
        if self.uncertainty is not None and self.uncertainty.shape != (n,):
            raise QueryError(f"PoolScores.uncertainty must be [N={n}]. Got {self.uncertainty.shape}.")
        if self.cand_uncertainty.shape != (k,) or self.cand_embeddings.ndim != 2 or len(self.cand_embeddings) != k:
            raise QueryError(
                f"PoolScores candidates disagree: {k} ids, uncertainty {self.cand_uncertainty.shape}, "
                f"embeddings {self.cand_embeddings.shape}."
            )
        if self.feature_norm is not None and self.feature_norm.shape != (n,):
            raise QueryError(f"PoolScores.feature_norm must be [N={n}]. Got {self.feature_norm.shape}.")

    @property
    def prev_probs(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probs): what the next iteration passes as ``prev_probs``."""
        return self.ids, self.probs

    def candidate_probs(self) -> np.ndarray:
        """float32 [K, C]: the probabilities of ``cand_ids``, looked up in ``probs`` (``ids`` is sorted).

        What the gradient embedding of the diversity step needs besides ``cand_embeddings``:
        K*C floats at selection time, so no scorer keeps C x D floats per candidate.
        """
        rows = np.searchsorted(self.ids, self.cand_ids)
        found = rows < len(self.ids)
        found[found] = self.ids[rows[found]] == np.asarray(self.cand_ids)[found]
        if not found.all():
            raise QueryError(
                f"PoolScores: candidate {np.asarray(self.cand_ids)[~found][0]!r} is not among the scored ids; "
                "the scores were assembled wrongly (this is a bug)."
            )
        return self.probs[rows]

    @classmethod
    def assemble(
        cls,
        ids: list[np.ndarray],
        probs: list[np.ndarray],
        uncertainty: list[np.ndarray] | None,
        uncertainty_name: str | None,
        top: TopKCandidates,
        feature_norm: list[np.ndarray] | None = None,
    ) -> "PoolScores":
        """Concatenate per-block outputs, sort by id, attach the top-K: shared by both scoring paths.

        feature_norm: per-block ||h|| [n] float32 aligned with ``ids``, or None (not recorded).
        """
        # Memory: at most one concatenated copy and one sorted copy of each array (a 10^6 pool is scored).
        # Parts that arrive in id order (the ranks' sorted parts, sorted shards) are not copied again;
        # otherwise the stable sort merges their sorted runs (timsort) instead of sorting from scratch.
        all_ids = _concat(ids, str) if ids else np.zeros(0, dtype=str)
        order = None if _strictly_increasing(all_ids) else np.argsort(all_ids, kind="stable")
        if order is not None:
            all_ids = all_ids[order]
            if np.any(all_ids[1:] == all_ids[:-1]):
                raise QueryError("The pool holds duplicate sample ids; re-prepare the shards (ids must be unique).")
        all_probs = _concat(probs, np.float32) if probs else np.zeros((0, 0), np.float32)
        unc = _concat(uncertainty, np.float64) if uncertainty is not None and ids else None
        norms = _concat(feature_norm, np.float32) if feature_norm is not None and ids else None
        if order is not None:
            all_probs = all_probs[order]
            unc = unc[order] if unc is not None else None
            norms = norms[order] if norms is not None else None
        cand_ids, cand_unc, cand_emb = top.result()
        if cand_emb is None:
            cand_emb = np.zeros((0, 0), np.float32)
        return cls(
            ids=all_ids,
            probs=all_probs,
            uncertainty_name=uncertainty_name,
            uncertainty=unc,
            cand_ids=cand_ids,
            cand_uncertainty=cand_unc,
            cand_embeddings=cand_emb,
            feature_norm=norms,
        )


def _strictly_increasing(ids: np.ndarray) -> bool:
    """True when ``ids`` [N] is sorted ascending without repeats (one vectorized pass, no sort)."""
    return len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    """One array of ``dtype`` from ``parts``, copying only when it must."""
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out.astype(dtype, copy=False)
