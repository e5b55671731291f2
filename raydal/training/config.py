"""Training hyperparameters: one validated dataclass (defaults: the paper's UCMerced protocol)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from raydal.exceptions import ConfigError
from raydal.settings import EXECUTION, RESULT, Interval, check_settings, setting
from raydal.utils import dataclass_from_dict

#: Mixed precision of training, evaluation and pool scoring alike (see ``autocast_dtype``).
AMP_MODES = ("auto", "bf16", "off")


def check_amp(amp: Any, owner: str) -> str:
    """``amp`` if it is one of ``AMP_MODES``; ConfigError naming ``owner`` otherwise."""
    if not isinstance(amp, str) or amp not in AMP_MODES:
        raise ConfigError(f"The 'amp' parameter of {owner} must be one of {AMP_MODES}. Got {amp!r} instead.")
    return amp


def autocast_dtype(amp: str, device: "torch.device") -> "torch.dtype | None":  # noqa: F821
    """The autocast dtype of an ``amp`` mode on ``device``; ``None``: full precision (fp32).

    "auto": bf16 on CUDA, fp32 elsewhere; "bf16": bf16 on any device; "off": fp32.
    Training, evaluation and pool scoring all resolve ``TrainConfig.amp`` here,
    so a model is scored at the precision it was trained at.
    """
    import torch

    check_amp(amp, "autocast_dtype")
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


@dataclass
class TrainConfig:
    """How one model is trained (the paper's training protocol: docs/models.md, "Training protocol").

    Defaults are the paper's UCMerced settings (100 epochs, batch 10, lr 0.025);
    TreeSatAI uses ``epochs=200, batch_size=100, lr=0.01`` (its ``paper`` preset,
    ``raydal.config.PAPER_PRESETS``). ``momentum`` and ``weight_decay`` are not given
    by the paper; the defaults are Yoo & Kweon's. Each field's default, range and help
    live in its :func:`~raydal.settings.setting` declaration; ``raydal run`` derives
    its flags (``--epochs``, ``--ll-lambda``, ...) from them.
    """

    epochs: int = setting(100, "training epochs per AL iteration", Interval(int, 1), kind=RESULT)
    batch_size: int = setting(
        10,
        "global batch size; under data parallelism each of W workers gets batch_size // W",
        Interval(int, 1),
        kind=RESULT,
    )
    lr: float = setting(
        0.025,
        "initial learning rate of SGD (backbone + head) and of Adam (LL module)",
        Interval(float, 0, None, "neither"),
        kind=RESULT,
    )
    momentum: float = setting(0.9, "SGD momentum", Interval(float, 0, 1), kind=RESULT)
    weight_decay: float = setting(
        5e-4, "SGD weight decay (the LL module's Adam has none)", Interval(float, 0), kind=RESULT
    )
    lr_decay_at: float = setting(
        0.8,
        "fraction of epochs after which both learning rates are multiplied by lr_decay_factor",
        Interval(float, 0, 1),
        kind=RESULT,
    )
    lr_decay_factor: float = setting(
        0.1, "step decay factor of both learning rates", Interval(float, 0, 1, "right"), kind=RESULT
    )
    ll_lambda: float = setting(0.1, "lambda of eq. (3): weight of the LL ranking loss", Interval(float, 0), kind=RESULT)
    ll_margin: float = setting(
        1.0, "xi of eq. (2): margin of the LL ranking loss", Interval(float, 0, None, "neither"), kind=RESULT
    )
    ll_stop_at: float = setting(
        0.6,
        "fraction of epochs after which the LL loss no longer trains the backbone",
        Interval(float, 0, 1),
        kind=RESULT,
    )
    augment: bool = setting(True, "random horizontal flip and rotation by k * 90 degrees", kind=RESULT)
    # a result setting: "auto" trains in bf16 on CUDA, in fp32 on CPU (so ALConfig.use_gpu is one too)
    amp: str = setting(
        "auto",
        "precision of training, evaluation and pool scoring: auto: bf16 "
        "autocast + channels_last on CUDA, fp32 on CPU; bf16; off",
        choices=AMP_MODES,
        kind=RESULT,
    )
    seed: int = setting(0, "training seed (set from the run's seed)", Interval(int, 0), cli=False, kind=RESULT)
    warm_start: bool = setting(
        False, "start from the previous iteration's model (set from the run's warm_start)", cli=False, kind=RESULT
    )
    # validation inside fit reads the model, never changes it (the AL executors switch it off)
    eval_every: int = setting(
        1, "validate every this many epochs (and always after the last)", Interval(int, 1), kind=EXECUTION
    )
    threshold: float = setting(
        0.5,
        "probability threshold of F1, precision and recall",
        Interval(float, 0, 1),
        flag="--f1-threshold",
        kind=RESULT,
    )

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def lr_decay_epoch(self) -> int:
        """First (0-based) epoch trained at the decayed rate: 80 of 100 on UCMerced."""
        return math.floor(self.lr_decay_at * self.epochs + 0.5)

    @property
    def ll_stop_epoch(self) -> int:
        """First (0-based) epoch whose LL loss does not reach the backbone: 60 of 100."""
        return math.floor(self.ll_stop_at * self.epochs + 0.5)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch`` (step decay)."""
        return self.lr * (self.lr_decay_factor if epoch >= self.lr_decay_epoch else 1.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return dataclass_from_dict(cls, data)
