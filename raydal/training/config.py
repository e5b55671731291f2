"""Training hyperparameters: one validated dataclass (defaults: the paper's UCMerced protocol)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from raydal.exceptions import ConfigError
from raydal.utils import dataclass_from_dict

AMP_MODES = ("auto", "bf16", "off")


def _fail(name: str, what: str, value: Any) -> None:
    raise ConfigError(f"The '{name}' parameter of TrainConfig must be {what}. Got {value!r} instead.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class TrainConfig:
    """How one model is trained (method.md, "Training protocol in the paper").

    Defaults are the paper's UCMerced settings (100 epochs, batch 10, lr 0.025);
    TreeSatAI uses ``epochs=200, batch_size=100, lr=0.01``. ``momentum`` and
    ``weight_decay`` are not given by the paper; the defaults are Yoo & Kweon's.
    """

    epochs: int = 100
    #: Global batch size; under data parallelism each of W workers gets ``batch_size // W``.
    batch_size: int = 10
    #: Initial learning rate of SGD (backbone + head) and of Adam (LL module).
    lr: float = 0.025
    momentum: float = 0.9
    #: SGD weight decay (the LL module's Adam has none).
    weight_decay: float = 5e-4
    #: Fraction of ``epochs`` after which both learning rates are multiplied by ``lr_decay_factor``.
    lr_decay_at: float = 0.8
    lr_decay_factor: float = 0.1
    #: lambda of eq. (3).
    ll_lambda: float = 0.1
    #: xi of eq. (2).
    ll_margin: float = 1.0
    #: Fraction of ``epochs`` after which the LL loss no longer trains the backbone.
    ll_stop_at: float = 0.6
    #: Random horizontal flip and rotation by k * 90 degrees.
    augment: bool = True
    #: "auto": bf16 autocast + channels_last on CUDA, plain fp32 on CPU; "bf16"; "off".
    amp: str = "auto"
    seed: int = 0
    #: Start from the previous iteration's model (True) or a fresh init (False).
    warm_start: bool = False
    #: Validate every this many epochs (and always after the last).
    eval_every: int = 1
    #: Probability threshold for F1, precision and recall.
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                _fail(name, "an int >= 1", v)
        if not _is_int(self.seed) or self.seed < 0:
            _fail("seed", "an int >= 0", self.seed)
        for name in ("lr", "ll_margin"):
            v = getattr(self, name)
            if not _is_number(v) or not v > 0:
                _fail(name, "a float > 0", v)
        for name in ("momentum", "lr_decay_at", "ll_stop_at", "threshold"):
            v = getattr(self, name)
            if not _is_number(v) or not 0 <= v <= 1:
                _fail(name, "a float in [0, 1]", v)
        for name in ("weight_decay", "ll_lambda"):
            v = getattr(self, name)
            if not _is_number(v) or v < 0:
                _fail(name, "a float >= 0", v)
        if not _is_number(self.lr_decay_factor) or not 0 < self.lr_decay_factor <= 1:
            _fail("lr_decay_factor", "a float in (0, 1]", self.lr_decay_factor)
        if self.amp not in AMP_MODES:
            _fail("amp", f"one of {AMP_MODES}", self.amp)
        for name in ("augment", "warm_start"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, "a bool", getattr(self, name))

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
