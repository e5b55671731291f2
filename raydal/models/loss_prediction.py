"""The LL loss-prediction module and its losses (Yoo & Kweon 2019; docs/models.md, "The LL module and its losses").

Shapes: ``B`` samples in a batch, ``P`` pairs, ``C_i`` channels of hidden map ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raydal.exceptions import ConfigError
from raydal.settings import Interval, check_value


class LossPredictionModule(nn.Module):
    """F_L: predicts each sample's loss from hidden feature maps of the backbone.

    Every map ``[N, C_i, H_i, W_i]`` goes through global average pooling, a
    ``C_i -> hidden`` fully connected layer and ReLU; the ``len(maps) * hidden``
    concatenation goes through a final ``-> 1`` fully connected layer.
    """

    def __init__(self, feature_channels: Sequence[int], hidden: int = 128):
        super().__init__()
        if not feature_channels:
            raise ConfigError("LossPredictionModule needs at least one hidden feature map. Got none.")
        check_value(hidden, "ll_hidden", "LossPredictionModule", Interval(int, 1))
        self.feature_channels = tuple(int(c) for c in feature_channels)
        self.branches = nn.ModuleList(nn.Linear(c, hidden) for c in self.feature_channels)
        self.out = nn.Linear(hidden * len(self.feature_channels), 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: list of ``[N, C_i, H_i, W_i]`` (any float dtype) -> predicted loss float32 ``[N]``."""
        if len(features) != len(self.branches):
            raise ConfigError(
                f"LossPredictionModule was built for {len(self.branches)} feature maps; got {len(features)}."
            )
        # Always in float32, also under bf16 autocast: a bf16 output keeps ~3 significant digits,
        # which collapses a pool's predicted losses into few distinct values and leaves LL's
        # ranking to the tie-break. The head is tiny, so this costs nothing measurable.
        with torch.autocast(features[0].device.type, enabled=False):
            pooled = [F.relu(fc(f.mean(dim=(2, 3), dtype=torch.float32))) for fc, f in zip(self.branches, features)]
            return self.out(torch.cat(pooled, dim=1)).squeeze(1)


def bce_per_sample(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. (1): BCE summed over classes. ``logits``, ``labels``: ``[N, C]`` -> ``[N]`` (float32)."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").sum(dim=1)


def random_pairs(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Random disjoint pairs inside a batch: ``[batch_size // 2, 2]`` long indices.

    A random permutation cut into consecutive pairs; with an odd batch the one
    sample left over is not paired. ``generator`` makes it reproducible.
    """
    check_value(batch_size, "batch_size", "random_pairs", Interval(int, 0))
    perm = torch.randperm(batch_size, generator=generator)
    n_pairs = batch_size // 2
    return perm[: 2 * n_pairs].reshape(n_pairs, 2)


def _check_pairs(losses: torch.Tensor, pred_losses: torch.Tensor, pairs: torch.Tensor) -> None:
    if losses.ndim != 1 or pred_losses.shape != losses.shape:
        raise ConfigError(
            "ll_pair_loss needs 'losses' and 'pred_losses' as [B] tensors of equal shape. "
            f"Got {tuple(losses.shape)} and {tuple(pred_losses.shape)} instead."
        )
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ConfigError(
            f"The 'pairs' parameter of ll_pair_loss must be a [P, 2] index tensor. Got {tuple(pairs.shape)} instead."
        )


def ll_pair_loss(
    losses: torch.Tensor,
    pred_losses: torch.Tensor,
    pairs: torch.Tensor,
    margin: float = 1.0,
) -> torch.Tensor:
    """Eq. (2) averaged over pairs: ``mean_p max(0, -sign(l_j - l_k) * (lhat_j - lhat_k) + margin)``.

    ``losses``: true per-sample losses ``[B]`` (treated as constants: no gradient
    flows into them); ``pred_losses``: F_L's predictions ``[B]``; ``pairs``:
    ``[P, 2]`` long indices ``(j, k)``. A tie ``l_j == l_k`` has sign 0 and costs
    ``margin``. With no pairs (``P == 0``) the loss is 0. Returns a scalar.
    """
    _check_pairs(losses, pred_losses, pairs)
    if pairs.shape[0] == 0:
        return pred_losses.sum() * 0.0
    pairs = pairs.to(device=losses.device, dtype=torch.long)
    target = losses.detach()
    j, k = pairs[:, 0], pairs[:, 1]
    sign = torch.sign(target[j] - target[k])
    per_pair = torch.clamp(-sign * (pred_losses[j] - pred_losses[k]) + margin, min=0)
    return per_pair.mean()
