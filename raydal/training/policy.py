"""When the training loop checkpoints and what it prints: plain Python, no torch.

The Ray launcher's driver reads ``CheckpointPolicy`` without importing torch;
``raydal.training.loop`` uses both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raydal.exceptions import ConfigError


@dataclass(frozen=True)
class CheckpointPolicy:
    """When rank 0 hands a full checkpoint (model + optimizer state) to ``report``.

    After every ``every_epochs``-th epoch, or once ``every_seconds`` have passed
    since the last one (checked at epoch ends), and always after the last epoch.
    ``None`` turns a criterion off. A killed worker group resumes from the last
    checkpoint, so the policy bounds the work lost (here: 10 epochs or 5 minutes)
    against what writing checkpoints costs (a DenseNet121 with its optimizer
    state is ~60 MB per upload).
    """

    every_epochs: int | None = 10
    every_seconds: float | None = 300.0

    def __post_init__(self) -> None:
        e, t = self.every_epochs, self.every_seconds
        if e is not None and (not isinstance(e, int) or isinstance(e, bool) or e < 1):
            raise ConfigError(f"The 'checkpoint_every' parameter must be an int >= 1 or None. Got {e!r} instead.")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0):
            raise ConfigError(f"The 'checkpoint_seconds' parameter must be a number > 0 or None. Got {t!r} instead.")

    def due(self, epochs_done: int, epochs: int, seconds_since_last: float) -> bool:
        """Whether to checkpoint after ``epochs_done`` of ``epochs`` epochs."""
        return (
            epochs_done == epochs
            or (self.every_epochs is not None and epochs_done % self.every_epochs == 0)
            or (self.every_seconds is not None and seconds_since_last >= self.every_seconds)
        )


class EpochProgress:
    """One progress line per epoch (about ten per fit when there are many): loss, images/s, time left.

    ``world``: data-parallel ranks (images/s counts all of them, each rank
    reports its own ``train_samples``).
    """

    def __init__(self, epochs: int, world: int = 1, lines: int = 10):
        self.epochs, self.world = epochs, world
        self.every = max(1, epochs // lines) if epochs >= lines else 1
        self._seconds: list[float] = []

    def __call__(self, metrics: dict[str, Any]) -> str | None:
        """The line for this epoch's ``metrics`` (from ``fit``), or None when this epoch is skipped."""
        epoch = int(metrics["epoch"])
        self._seconds.append(float(metrics.get("seconds", 0.0)))
        if epoch % self.every and epoch != self.epochs:
            return None
        seconds = self._seconds[-1]
        rate = metrics.get("train_samples", 0) * self.world / seconds if seconds > 0 else float("nan")
        recent = self._seconds[-self.every :]
        left = (self.epochs - epoch) * sum(recent) / len(recent)
        line = (
            f"  epoch {epoch}/{self.epochs} loss {metrics.get('train_loss', float('nan')):.4f} "
            f"| {rate:.0f} img/s | {seconds:.1f}s/epoch, {left:.0f}s left"
        )
        if "val_micro_f1" in metrics:
            line += f" | val micro-F1 {metrics['val_micro_f1']:.4f}"
        return line
