"""Training: one loop, evaluation metrics, augmentation, the in-process launcher.

No Ray here; ``raydal.distributed.train.train_with_ray`` runs the same loop under Ray Train.
Importing the package (or ``raydal.training.config``, which ``ALConfig`` reads)
imports no torch: each public name is imported from its module on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    "ModelSpec": "raydal.models.factory",
    "augment_batch": "raydal.training.augment",
    "TrainConfig": "raydal.training.config",
    "TrainResult": "raydal.training.in_process",
    "build_initial_model": "raydal.training.in_process",
    "train_in_process": "raydal.training.in_process",
    "fit": "raydal.training.loop",
    "evaluate": "raydal.training.metrics",
    "multilabel_metrics": "raydal.training.metrics",
    "as_epoch_source": "raydal.training.sources",
}

if TYPE_CHECKING:
    from raydal.models.factory import ModelSpec
    from raydal.training.augment import augment_batch
    from raydal.training.config import TrainConfig
    from raydal.training.in_process import TrainResult, build_initial_model, train_in_process
    from raydal.training.loop import fit
    from raydal.training.metrics import evaluate, multilabel_metrics
    from raydal.training.sources import as_epoch_source


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raydal.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
