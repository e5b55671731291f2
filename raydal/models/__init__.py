"""Models: backbones behind a registry, the LL loss-prediction module and its losses, checkpoints.

No Ray here: everything runs in one process, on CPU or one GPU.
"""

from raydal.models.registry import list_models, register_model
from raydal.models.factory import ModelSpec, create_model
from raydal.models.checkpoint import (
    load_checkpoint,
    load_weights_into,
    read_checkpoint_meta,
    save_checkpoint,
    unwrap,
)
from raydal.models.loss_prediction import (
    LossPredictionModule,
    bce_per_sample,
    ll_joint_loss,
    ll_pair_loss,
    random_pairs,
)
from raydal.models.net import ALNet, ModelOutput
from raydal.models.preprocess import preprocess
from raydal.models.weights import adapt_first_conv_weight

__all__ = [
    "ALNet",
    "LossPredictionModule",
    "ModelOutput",
    "ModelSpec",
    "adapt_first_conv_weight",
    "bce_per_sample",
    "create_model",
    "list_models",
    "ll_joint_loss",
    "ll_pair_loss",
    "load_checkpoint",
    "load_weights_into",
    "preprocess",
    "random_pairs",
    "read_checkpoint_meta",
    "register_model",
    "save_checkpoint",
    "unwrap",
]
