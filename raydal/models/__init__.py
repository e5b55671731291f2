"""Models: backbones behind a registry, the LL loss-prediction module and its losses, checkpoints.

No Ray here: everything runs in one process, on CPU or one GPU. Importing the
package imports no torch: ``list_models`` and ``register_model`` come from the
torch-free registry, and every other name is imported from its module on first
use (PEP 562), so a process that only checks backbone names (the AL driver, the
CLI) stays without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raydal.models.registry import list_models, register_model

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    "ModelSpec": "factory",
    "create_model": "factory",
    "load_checkpoint": "checkpoint",
    "load_weights_into": "checkpoint",
    "read_checkpoint_meta": "checkpoint",
    "save_checkpoint": "checkpoint",
    "unwrap": "checkpoint",
    "LossPredictionModule": "loss_prediction",
    "bce_per_sample": "loss_prediction",
    "ll_pair_loss": "loss_prediction",
    "random_pairs": "loss_prediction",
    "ALNet": "net",
    "ModelOutput": "net",
    "preprocess": "preprocess",
    "adapt_first_conv_weight": "weights",
}

if TYPE_CHECKING:
    from raydal.models.checkpoint import (
        load_checkpoint,
        load_weights_into,
        read_checkpoint_meta,
        save_checkpoint,
        unwrap,
    )
    from raydal.models.factory import ModelSpec, create_model
    from raydal.models.loss_prediction import (
        LossPredictionModule,
        bce_per_sample,
        ll_pair_loss,
        random_pairs,
    )
    from raydal.models.net import ALNet, ModelOutput
    from raydal.models.preprocess import preprocess
    from raydal.models.weights import adapt_first_conv_weight


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raydal.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"raydal.models.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(["list_models", "register_model", *_LAZY])
