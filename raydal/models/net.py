"""ALNet: backbone + multi-label head + optional LL loss-prediction module, one forward pass."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from raydal.models.backbones import Backbone
from raydal.models.loss_prediction import LossPredictionModule


class ModelOutput(NamedTuple):
    """Everything one forward pass gives (N samples, C classes, D embedding width)."""

    #: ``[N, C]`` raw scores; ``sigmoid(logits)`` are the per-class probabilities.
    logits: torch.Tensor
    #: ``[N, D]`` global-average-pooled penultimate features (the clustering space).
    embeddings: torch.Tensor
    #: Hidden maps read by the LL module: list of ``[N, C_i, H_i, W_i]``.
    features: list[torch.Tensor]
    #: ``[N]`` predicted loss (LL uncertainty, eq. 4), or ``None`` when built with ``ll=False``.
    pred_loss: torch.Tensor | None


class ALNet(nn.Module):
    """The classifier F (backbone + linear head) and, when ``ll``, the loss predictor F_L.

    Build with ``raydal.models.create_model``; ``spec`` holds the arguments that
    rebuild it (saved in checkpoints).
    """

    def __init__(self, backbone: Backbone, num_classes: int, ll: bool, ll_hidden: int, spec: dict):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dim, num_classes)
        self.ll = LossPredictionModule(backbone.feature_channels, ll_hidden) if ll else None
        self.spec = dict(spec)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def embed_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor, detach_ll: bool = False) -> ModelOutput:
        """``x``: float ``[N, B, H, W]`` in [0, 1] (see ``preprocess``).

        ``detach_ll=True`` feeds detached hidden maps to the LL module: its loss
        then trains only F_L, not the backbone (the paper's gradient stop).
        """
        features, embeddings = self.backbone(x)
        logits = self.head(embeddings)
        pred_loss = None
        if self.ll is not None:
            pred_loss = self.ll([f.detach() for f in features] if detach_ll else features)
        return ModelOutput(logits, embeddings, features, pred_loss)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(classifier params: backbone + head, LL module params)`` for their two optimizers."""
        main = list(self.backbone.parameters()) + list(self.head.parameters())
        ll = list(self.ll.parameters()) if self.ll is not None else []
        return main, ll
