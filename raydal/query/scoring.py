"""Pool scoring in one process (no Ray): forward passes, uncertainties, a bounded top-K.

Memory: scoring a pool of N samples keeps ids [N], probs [N, C] and the
uncertainty [N], but embeddings only for the running top-K candidates
(``TopKCandidates``), so the peak is O(N*C + K*D) whatever the pool size.
The Ray Train workers run ``score_pool`` on their share of the pool
(``raydal.distributed.train.PoolScoring``), and the Ray Data actors
(``raydal.distributed.score_data``) and warm Ray actors
(``raydal.distributed.score.score_pool_ray``) run the same ``BlockScorer``, all
merging into the same accumulator, so every path selects the same samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from raydal.exceptions import ConfigError, QueryError
from raydal.query.base import QueryStrategy, get_strategy
from raydal.query.candidates import PoolScores, TopKCandidates, unpack_ids
from raydal.query.ranking import as_numpy, check_finite

if TYPE_CHECKING:
    import torch

__all__ = [
    "BlockScorer",
    "PoolScores",
    "PrevProbs",
    "TopKCandidates",
    "merge_pool_scores",
    "score_batch",
    "score_pool",
]


# ---------------------------------------------------------------------- one batch


def score_batch(
    model: "torch.nn.Module",
    images: "np.ndarray | torch.Tensor",
    device: "torch.device | str | None" = None,
    *,
    amp: str = "auto",
) -> dict[str, np.ndarray | None]:
    """One forward pass in eval mode under ``torch.inference_mode``.

    model: an ALNet (forward returns ``ModelOutput(logits, embeddings, features, pred_loss)``).
    images: uint8 [N, H, W, B].
    device: where to run; default: the model's device.
    amp: the training's ``TrainConfig.amp`` ("auto": bf16 on CUDA, fp32 on CPU;
        "bf16"; "off": fp32), resolved by ``raydal.training.config.autocast_dtype``
        like training and evaluation. Outputs are float32 either way.
    Returns: ``probs`` float32 [N, C] sigmoid probabilities, ``embeddings``
    float32 [N, D] penultimate features, ``pred_loss`` float32 [N] or None.
    """
    import torch

    from raydal.models import preprocess
    from raydal.training.config import autocast_dtype

    dev = torch.device(device) if device is not None else _model_device(model)
    dtype = autocast_dtype(amp, dev)
    x = preprocess(images, dev)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
    finally:
        model.train(was_training)
    pred_loss = getattr(out, "pred_loss", None)
    return {
        "probs": torch.sigmoid(out.logits.float()).cpu().numpy(),
        "embeddings": out.embeddings.float().cpu().numpy(),
        "pred_loss": None if pred_loss is None else pred_loss.float().reshape(-1).cpu().numpy(),
    }


def _model_device(model: "torch.nn.Module") -> "torch.device":
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def feature_norms(embeddings: np.ndarray) -> np.ndarray:
    """float32 [N]: ||h||_2 of each row of ``embeddings`` [N, D] (summed in float64, so the value
    does not depend on how a BLAS would split the sum)."""
    h = np.asarray(embeddings, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", h, h)).astype(np.float32)


# ---------------------------------------------------------------------- previous predictions


class PrevProbs:
    """The previous iteration's pool probabilities, looked up by sample id.

    Build from a mapping {id: [C]} or a pair (ids [N], probs [N, C]), e.g.
    ``(old_scores.ids, old_scores.probs)``.
    """

    def __init__(self, prev: "Mapping[str, Any] | tuple[Any, Any] | PrevProbs"):
        if isinstance(prev, PrevProbs):
            self.ids, self.probs, self._row = prev.ids, prev.probs, prev._row
            return
        if isinstance(prev, Mapping):
            ids = np.asarray(list(prev.keys()), dtype=str)
            probs = (
                np.stack([np.asarray(as_numpy(v), dtype=np.float32) for v in prev.values()])
                if len(prev)
                else np.zeros((0, 0), np.float32)
            )
        elif isinstance(prev, tuple) and len(prev) == 2:
            ids = unpack_ids(prev[0])  # str, or packed (raydal.query.candidates.pack_ids)
            probs = np.asarray(as_numpy(prev[1]), dtype=np.float32)
        else:
            raise ConfigError(
                "The 'prev_probs' parameter must be a mapping {id: [C] probs} or a pair (ids [N], probs [N, C]). "
                f"Got {type(prev).__name__} instead."
            )
        if probs.ndim != 2 or len(probs) != len(ids):
            raise QueryError(
                f"prev_probs must pair {len(ids)} ids with probs [N, C]. Got probs of shape {probs.shape}."
            )
        self.ids, self.probs = ids, probs
        self._row = {sid: i for i, sid in enumerate(ids.tolist())}

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """[n, C] previous probabilities of ``ids``; QueryError names ids that have none."""
        rows = [self._row.get(sid, -1) for sid in np.asarray(ids, dtype=str).tolist()]
        missing = [sid for sid, r in zip(ids, rows) if r < 0]
        if missing:
            raise QueryError(
                f"prev_probs has no probabilities for {len(missing)} pool id(s), e.g. {missing[:3]}: pass the "
                "previous iteration's probabilities for the whole unlabeled pool."
            )
        return self.probs[np.asarray(rows, dtype=np.int64)]


class BlockScorer:
    """Scores blocks of images for one strategy; the unit both scoring paths run.

    Keeps an embedding-free ``TopKCandidates`` of what it has seen, so for each
    block it returns embeddings only for rows that may still reach the global
    top-K (a row in the global top-K is always in the top-K of any subset that
    contains it). In a Ray actor that bounds what is shipped to the driver.

    model: an ALNet on ``device``. strategy: name or instance. k: candidates to keep.
    prev_probs: previous-iteration probabilities (see ``PrevProbs``) or None.
    amp: precision mode, the training's ``TrainConfig.amp`` (see ``score_batch``).
    """

    def __init__(
        self,
        model: "torch.nn.Module",
        strategy: "str | QueryStrategy",
        k: int,
        prev_probs: "Mapping[str, Any] | tuple[Any, Any] | PrevProbs | None" = None,
        device: "torch.device | str | None" = None,
        amp: str = "auto",
    ):
        from raydal.training.config import check_amp

        self.model = model
        self.amp = check_amp(amp, "BlockScorer")
        self.strategy = get_strategy(strategy)
        self.prev = PrevProbs(prev_probs) if prev_probs is not None else None
        self.device = device
        #: The uncertainty this run ranks by; None = only probabilities are produced.
        self.uncertainty_name = self.strategy.ranks_by(self.prev is not None)
        self.k = k if self.uncertainty_name is not None else 0
        self._seen = TopKCandidates(self.k)

    def __call__(self, ids: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
        """Score one block. ids: [n] str; images: uint8 [n, H, W, B].

        Returns ``id`` [n], ``probs`` float32 [n, C], ``uncertainty`` float64 [n]
        (zeros when none is computed), ``feature_norm`` float32 [n] (||h||_2 of every
        row, for the query diagnostics), ``candidate`` bool [n] and ``embeddings``
        float32 [n_candidates, D] for the rows where ``candidate`` is True.
        """
        ids = np.asarray(ids, dtype=str)
        scored = score_batch(self.model, images, self.device, amp=self.amp)
        n = len(ids)
        if self.uncertainty_name is None:
            unc = np.zeros(n)
            cand = np.zeros(n, dtype=bool)
        else:
            prev = self.prev.lookup(ids) if self.prev is not None else None
            unc = np.asarray(self.strategy.score(scored, prev), dtype=np.float64)
            check_finite(unc, f"{self.uncertainty_name} uncertainty", ids)
            cand = self._seen.admits(ids, unc)
            self._seen.add(ids, unc)
        return {
            "id": ids,
            "probs": scored["probs"].astype(np.float32),
            "uncertainty": unc,
            "feature_norm": feature_norms(scored["embeddings"]),
            "candidate": cand,
            "embeddings": scored["embeddings"][cand].astype(np.float32),
        }


def score_pool(
    model: "torch.nn.Module",
    batches: Iterable[Mapping[str, Any]],
    strategy: "str | QueryStrategy",
    k: int,
    prev_probs: "Mapping[str, Any] | tuple[Any, Any] | PrevProbs | None" = None,
    device: "torch.device | str | None" = None,
    *,
    amp: str = "auto",
) -> PoolScores:
    """Score the unlabeled pool in this process.

    model: an ALNet (moved to ``device`` when given; default its current device).
    batches: decoded dicts {"id": [n] str, "image": uint8 [n, H, W, B], ...}, e.g.
        ``raydal.data.shards.iter_batches(manifest, "pool", 64, exclude=labeled_ids)``.
    strategy: name or instance; decides which uncertainty is computed.
    k: candidates to keep with embeddings, ``strategy.candidate_count(b, m)``.
    prev_probs: TPD's previous-iteration probabilities (mapping or (ids, probs));
        None in the first iteration, where TPD keeps no candidates.
    amp: precision mode, pass the training's ``TrainConfig.amp`` ("auto", "bf16", "off").
    Returns PoolScores; memory O(N*C + k*D).
    """
    if device is not None:
        model.to(device)
    scorer = BlockScorer(model, strategy, k, prev_probs, device, amp)
    top = TopKCandidates(scorer.k)
    ids, probs, uncs, norms = [], [], [], []
    for batch in batches:
        out = scorer(batch["id"], batch["image"])
        ids.append(out["id"])
        probs.append(out["probs"])
        uncs.append(out["uncertainty"])
        norms.append(out["feature_norm"])
        top.add(out["id"][out["candidate"]], out["uncertainty"][out["candidate"]], out["embeddings"])
    return PoolScores.assemble(
        ids, probs, uncs if scorer.uncertainty_name else None, scorer.uncertainty_name, top, feature_norm=norms
    )


def merge_pool_scores(parts: "Sequence[PoolScores]", k: int) -> PoolScores:
    """One ``PoolScores`` from the ranks' ``score_pool`` results over disjoint rows.

    The global top-K is the top-K of the ranks' top-K candidates (a row in the
    global top-K is in the top-K of any subset holding it), so this equals
    scoring the whole pool in one process. ``k``: the candidates to keep (as in ``score_pool``).
    """
    parts = [p for p in parts if len(p.ids)]
    if not parts:
        raise ConfigError("Nothing to score: the unlabeled pool is empty.")
    name = parts[0].uncertainty_name
    top = TopKCandidates(k if name is not None else 0)
    for p in parts:
        top.add(p.cand_ids, p.cand_uncertainty, p.cand_embeddings if len(p.cand_ids) else None)
    norms = [p.feature_norm for p in parts] if all(p.feature_norm is not None for p in parts) else None
    return PoolScores.assemble(
        [p.ids for p in parts],
        [p.probs for p in parts],
        [p.uncertainty for p in parts] if name else None,
        name,
        top,
        feature_norm=norms,
    )
