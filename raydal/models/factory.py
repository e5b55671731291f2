"""Building models: ``ModelSpec`` (what a checkpoint records) and ``create_model``.

Imports flow one way: ``registry`` <- ``backbones`` <- ``net`` <- ``factory``.
``ModelSpec`` needs no torch (the AL driver builds one); ``create_model`` imports it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raydal.models.registry import get_builder, list_models
from raydal.settings import Interval, check_value, param_error
from raydal.utils import dataclass_from_dict

if TYPE_CHECKING:
    from raydal.models.net import ALNet


@dataclass(frozen=True)
class ModelSpec:
    """The arguments of ``create_model``: what a checkpoint records to rebuild a model.

    ``ll``: build the LL loss-prediction module; False by default, as in ``raydal run``
    (``ALConfig.ll_module`` "auto": only for strategies that rank by it)."""

    backbone: str
    num_classes: int
    in_channels: int
    weights: str | None = None
    ll: bool = False
    ll_hidden: int = 128
    rgb_bands: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone:
            raise param_error("backbone", "ModelSpec", f"one of {list_models()}", self.backbone)
        for field in ("num_classes", "in_channels", "ll_hidden"):
            object.__setattr__(self, field, check_value(getattr(self, field), field, "ModelSpec", Interval(int, 1)))
        if self.weights is not None:
            object.__setattr__(self, "weights", os.fspath(self.weights))  # a Path must survive model.json
        if self.rgb_bands is not None:
            object.__setattr__(self, "rgb_bands", tuple(int(b) for b in self.rgb_bands))

    def build(self, seed: int | None = None, weights: bool = True) -> ALNet:
        """``create_model`` with these arguments; ``weights=False`` skips the weights file."""
        return create_model(
            self.backbone,
            self.num_classes,
            self.in_channels,
            weights=self.weights if weights else None,
            ll=self.ll,
            ll_hidden=self.ll_hidden,
            rgb_bands=self.rgb_bands,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rgb_bands"] = list(self.rgb_bands) if self.rgb_bands is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        return dataclass_from_dict(cls, data)


def create_model(
    name: str,
    num_classes: int,
    in_channels: int,
    weights: str | os.PathLike | None = None,
    ll: bool = ModelSpec.ll,
    ll_hidden: int = ModelSpec.ll_hidden,
    *,
    rgb_bands: Sequence[int] | None = None,
    seed: int | None = None,
) -> ALNet:
    """Build an ``ALNet``: backbone ``name`` with ``in_channels`` input bands, a
    ``num_classes``-way multi-label head and, when ``ll``, the LL module (only when
    asked, as ``raydal run`` builds it only for strategies that rank by it).

    ``weights``: path of a local state dict for the backbone (torchvision or
    raydal ``model.pt``; 3-band weights are adapted to ``in_channels``, RGB
    kernels going to ``rgb_bands``, default bands 0-2; see ``raydal.models.weights``).
    ``seed``: initialise the random weights from this seed without touching
    torch's global RNG; ``None`` uses the global RNG.
    """
    import torch

    from raydal.models.net import ALNet
    from raydal.models.weights import load_backbone_weights

    builder = get_builder(name)
    spec = ModelSpec(
        name,
        num_classes,
        in_channels,
        weights,
        bool(ll),
        ll_hidden,
        tuple(rgb_bands) if rgb_bands is not None else None,
    )

    def build() -> ALNet:
        backbone = builder(in_channels)
        model = ALNet(backbone, num_classes, ll=bool(ll), ll_hidden=ll_hidden, spec=spec.to_dict())
        if weights is not None:
            load_backbone_weights(model.backbone, weights, in_channels, rgb_bands)
        return model

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
