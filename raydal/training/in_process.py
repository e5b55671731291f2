"""The in-process launcher: the training loop in this process, on one device.

Importing this module imports no torch (``TrainResult`` is read by the Ray
launcher's driver); the functions import it when called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from raydal.constants import CHECKPOINT_SUBDIR, HISTORY_FILE
from raydal.exceptions import ConfigError
from raydal.training.config import TrainConfig
from raydal.training.sources import BatchData, as_epoch_source
from raydal.utils import atomic_write_strict_json, default_device

if TYPE_CHECKING:
    import torch

    from raydal.models import ModelSpec


@dataclass
class TrainResult:
    """What a launcher returns.

    ``checkpoint_dir``: local folder readable by ``raydal.models.load_checkpoint``;
    ``history``: one dict of scalar metrics per epoch; ``metrics``: the last epoch's.
    ``evaluations``: split -> ``evaluate`` metrics of the final model, where the
    launcher evaluated after training (``train_with_ray(evaluate_splits=...)``);
    ``pool_scores``: the unlabeled pool's ``PoolScores`` where it scored it
    (``train_with_ray(score=...)``), else None.
    """

    checkpoint_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    pool_scores: Any = None


def build_initial_model(spec: ModelSpec, cfg: TrainConfig, init_checkpoint: str | os.PathLike | None):
    """Warm start (``cfg.warm_start`` and a checkpoint): the checkpoint's weights;
    otherwise a fresh model seeded by ``cfg.seed`` (with ``spec.weights`` if set)."""
    from raydal.models import load_weights_into

    model = spec.build(seed=cfg.seed)
    if cfg.warm_start and init_checkpoint is not None:
        load_weights_into(model, init_checkpoint)
    return model


def train_in_process(
    spec: ModelSpec,
    cfg: TrainConfig,
    train_batches: BatchData,
    val_batches: BatchData | None = None,
    out_dir: str | os.PathLike | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    *,
    device: torch.device | str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a model for ``spec`` with ``cfg`` in this process and save it under ``out_dir``.

    ``train_batches`` / ``val_batches``: a decoded split in memory (``{"image": uint8
    [N, H, W, B], "labels": uint8 [N, C]}``, e.g. ``raydal.data.shards.read_split``;
    batched by ``cfg.batch_size``, training data shuffled per epoch), a callable
    ``epoch -> iterable of batches``, or a list of batches.
    ``init_checkpoint``: the previous model, used when ``cfg.warm_start``.
    ``on_epoch``: called with each epoch's metrics (progress display).
    Writes ``out_dir/checkpoint/`` (model + ``extra``: train config, final
    metrics) and ``out_dir/history.json``.
    """
    if out_dir is None:
        raise ConfigError("The 'out_dir' parameter of train_in_process is required: where the model is saved.")
    import torch

    from raydal.models import save_checkpoint
    from raydal.training.loop import fit

    out_dir = Path(out_dir)
    device = torch.device(device) if device is not None else default_device()
    train_source = as_epoch_source(train_batches, cfg.batch_size, seed=cfg.seed)
    val_source = as_epoch_source(val_batches, cfg.batch_size, seed=None) if val_batches is not None else None

    model = build_initial_model(spec, cfg, init_checkpoint).to(device)

    def report(metrics: dict[str, Any], _checkpoint: Path | None) -> None:
        if on_epoch is not None:
            on_epoch(metrics)

    history = fit(model, cfg, train_source, device, report, val_batches=val_source)
    extra = {
        "train_config": cfg.to_dict(),
        "metrics": history[-1],
        "warm_started_from": str(init_checkpoint) if cfg.warm_start and init_checkpoint else None,
    }
    checkpoint_dir = save_checkpoint(out_dir / CHECKPOINT_SUBDIR, model, extra=extra)
    atomic_write_strict_json(out_dir / HISTORY_FILE, history)  # a metric not computed (NaN) as null
    return TrainResult(checkpoint_dir, history, dict(history[-1]))
