"""Training: one loop, evaluation metrics, augmentation, the in-process launcher.

No Ray here; ``raydal.distributed.train.train_with_ray`` runs the same loop under Ray Train.
"""

from raydal.models import ModelSpec
from raydal.training.augment import augment_batch
from raydal.training.config import TrainConfig
from raydal.training.in_process import TrainResult, build_initial_model, train_in_process
from raydal.training.loop import fit
from raydal.training.metrics import evaluate, multilabel_metrics
from raydal.training.sources import as_epoch_source

__all__ = [
    "ModelSpec",
    "TrainConfig",
    "TrainResult",
    "as_epoch_source",
    "augment_batch",
    "build_initial_model",
    "evaluate",
    "fit",
    "multilabel_metrics",
    "train_in_process",
]
