"""What selection reads: the bounded top-K of candidates and the pool's scores (no torch).

``TopKCandidates`` keeps the running top-K by (uncertainty desc, id asc) with their
embeddings; ``PoolScores`` is a scored pool. Both scoring paths
(``raydal.query.scoring`` in process, ``raydal.distributed.score`` on Ray Data)
produce them and ``QueryStrategy.select`` (``raydal.query.base``) consumes them,
so imports run one way: ``ranking`` <- ``candidates`` <- ``base`` <- ``scoring``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raydal.exceptions import ConfigError, QueryError
from raydal.query.ranking import check_finite, rank_desc

__all__ = ["PoolScores", "TopKCandidates"]


class TopKCandidates:
    """Running top-``k`` samples by (uncertainty desc, id asc), with their embeddings.

    Blocks arrive in any order (batches, Ray actors); the kept set is the same.
    Rows are buffered and pruned to ``k`` once the buffer exceeds ``2k`` rows, so
    memory stays O(k*D). Embeddings are optional (``embeddings=None`` in every
    ``add``), which the Ray actors use to track only a threshold.
    """

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"The 'k' parameter of TopKCandidates must be an int >= 0. Got {k!r} instead.")
        self.k = int(k)
        self._ids: list[np.ndarray] = []
        self._unc: list[np.ndarray] = []
        self._emb: list[np.ndarray] = []
        self._rows = 0

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
        if self.k == 0 or len(ids) == 0:
            return
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.ndim != 2 or len(embeddings) != len(ids):
                raise QueryError(f"TopKCandidates.add got {len(ids)} ids but embeddings of shape {embeddings.shape}.")
            self._emb.append(embeddings)
        elif self._emb:
            raise QueryError("TopKCandidates.add: pass embeddings with every block or with none.")
        self._ids.append(ids)
        self._unc.append(unc)
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
        kept_ids = self._ids[0] if self._ids else np.zeros(0, dtype=str)
        kept_unc = self._unc[0] if self._unc else np.zeros(0)
        if len(kept_ids) + len(ids) <= self.k:
            return np.ones(len(ids), dtype=bool)
        order = rank_desc(np.concatenate([kept_unc, unc]), np.concatenate([kept_ids, ids]))[: self.k]
        mask = np.zeros(len(ids), dtype=bool)
        new_rows = order[order >= len(kept_ids)] - len(kept_ids)
        mask[new_rows] = True
        return mask

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids [K] str, uncertainty [K] float64, embeddings [K, D] float32 or None), most uncertain first."""
        self._prune()
        if not self._ids:
            return np.zeros(0, dtype=str), np.zeros(0), None
        return self._ids[0], self._unc[0], (self._emb[0] if self._emb else None)

    def _prune(self) -> None:
        if not self._ids:
            return
        ids = np.concatenate(self._ids)
        unc = np.concatenate(self._unc)
        order = rank_desc(unc, ids)[: self.k]
        self._ids, self._unc = [ids[order]], [unc[order]]
        if self._emb:
            self._emb = [np.concatenate(self._emb)[order]]
        self._rows = len(order)


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
    """

    ids: np.ndarray
    probs: np.ndarray
    uncertainty_name: str | None
    uncertainty: np.ndarray | None
    cand_ids: np.ndarray
    cand_uncertainty: np.ndarray
    cand_embeddings: np.ndarray

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

    @property
    def prev_probs(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probs): what the next iteration passes as ``prev_probs``."""
        return self.ids, self.probs

    @classmethod
    def assemble(
        cls,
        ids: list[np.ndarray],
        probs: list[np.ndarray],
        uncertainty: list[np.ndarray] | None,
        uncertainty_name: str | None,
        top: TopKCandidates,
    ) -> "PoolScores":
        """Concatenate per-block outputs, sort by id, attach the top-K: shared by both scoring paths."""
        # Memory: at most one concatenated copy and one sorted copy of each array (a 10^6 pool is scored).
        all_ids = _concat(ids, str) if ids else np.zeros(0, dtype=str)
        order = np.argsort(all_ids, kind="stable")
        all_ids = all_ids[order]
        if len(all_ids) > 1 and np.any(all_ids[1:] == all_ids[:-1]):
            raise QueryError("The pool holds duplicate sample ids; re-prepare the shards (ids must be unique).")
        all_probs = _concat(probs, np.float32) if probs else np.zeros((0, 0), np.float32)
        unc = _concat(uncertainty, np.float64)[order] if uncertainty is not None and ids else None
        cand_ids, cand_unc, cand_emb = top.result()
        if cand_emb is None:
            cand_emb = np.zeros((0, 0), np.float32)
        return cls(
            ids=all_ids,
            probs=all_probs[order],
            uncertainty_name=uncertainty_name,
            uncertainty=unc,
            cand_ids=cand_ids,
            cand_uncertainty=cand_unc,
            cand_embeddings=cand_emb,
        )


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    """One array of ``dtype`` from ``parts``, copying only when it must."""
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out.astype(dtype, copy=False)
