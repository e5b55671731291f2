"""The one training loop (docs/models.md, "The LL module" and "Training protocol"), used by both launchers.

Per batch (``train_step``, which the benchmarks time too): augment, forward,
per-sample BCE (eq. 1); when the model has the LL module (only strategies that
rank by it get one), random pairs inside the batch and the joint loss (eq. 3);
SGD steps the backbone and head, Adam the LL module, both at ``cfg.lr`` with
step decay at ``cfg.lr_decay_epoch``. From ``cfg.ll_stop_epoch`` on the LL
module reads detached features, so its loss no longer changes the backbone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from raydal.constants import TRAIN_STATE_FILE
from raydal.exceptions import ConfigError
from raydal.models import (
    bce_per_sample,
    ll_pair_loss,
    load_weights_into,
    preprocess,
    random_pairs,
    save_checkpoint,
    unwrap,
)
from raydal.training.augment import augment_batch
from raydal.training.config import TrainConfig, autocast_dtype
from raydal.training.metrics import evaluate
from raydal.training.policy import CheckpointPolicy, EpochProgress  # noqa: F401  (public here too)
from raydal.training.sources import EpochSource

#: ``report(metrics, checkpoint_dir)``: called once per epoch on every rank;
#: ``checkpoint_dir`` is a folder valid only during the call (rank 0, on checkpoint
#: epochs), or ``None``. ``metrics["checkpointed"]`` is True on every rank on a
#: checkpoint epoch, so all ranks know when rank 0 checkpoints.
ReportFn = Callable[[dict[str, Any], "Path | None"], None]


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the augmentation/pairing generator for one epoch on one rank."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class Optimizers(NamedTuple):
    """SGD for the backbone and head; Adam for the LL module (``None`` without one)."""

    sgd: torch.optim.Optimizer
    adam: torch.optim.Optimizer | None

    def set_lr(self, lr: float) -> None:
        for opt in self:
            for group in opt.param_groups if opt is not None else []:
                group["lr"] = lr

    def zero_grad(self) -> None:
        for opt in self:
            if opt is not None:
                opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self:
            if opt is not None:
                opt.step()


def make_optimizers(model: nn.Module, cfg: TrainConfig) -> Optimizers:
    """The two optimizers of ``model`` (an ``ALNet``) at ``cfg.lr`` (docs/models.md, "Training protocol")."""
    main_params, ll_params = unwrap(model).parameter_groups()
    sgd = torch.optim.SGD(main_params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    adam = torch.optim.Adam(ll_params, lr=cfg.lr) if ll_params else None
    return Optimizers(sgd, adam)


class StepResult(NamedTuple):
    """What one training step reports: samples seen, their summed BCE, the LL pair loss (or None)."""

    samples: int
    bce_sum: float
    ll_loss: float | None


def train_step(
    model: nn.Module,
    batch: Mapping[str, Any],
    cfg: TrainConfig,
    optimizers: Optimizers,
    *,
    device: torch.device,
    generator: torch.Generator,
    ll_stopped: bool = False,
    ddp_model: nn.Module | None = None,
) -> StepResult:
    """One optimisation step on one decoded batch; ``fit`` runs it and the benchmarks time it.

    ``batch``: ``{"image": uint8 [N, H, W, B], "labels": uint8 [N, C]}`` with N >= 2.
    Preprocess on ``device``, augment (``cfg.augment``, from ``generator``), forward
    under ``cfg.amp``'s autocast, per-sample BCE (eq. 1); when the model has an LL
    head, random pairs from ``generator`` and the joint loss (eq. 3) with the LL
    module reading detached features if ``ll_stopped``; then backward and a step
    of both optimizers. A model built without the LL head trains on BCE alone.
    ``ddp_model``: the DDP wrapper of ``model`` to run forward/backward through.
    """
    net = unwrap(model)
    forward = ddp_model if ddp_model is not None else model
    x = preprocess(batch["image"], device)
    y = torch.from_numpy(np.array(batch["labels"], dtype=np.uint8)).to(device)  # copy: may be read-only
    if y.shape[1] != net.num_classes:
        raise ConfigError(
            f"Batch labels have {y.shape[1]} classes but the model has {net.num_classes}: "
            "build the model with the archive's class count."
        )
    if cfg.augment:
        x = augment_batch(x, generator)
    dtype = autocast_dtype(cfg.amp, device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        out = forward(x, detach_ll=ll_stopped)
    losses = bce_per_sample(out.logits, y)
    loss = losses.mean()
    ll_loss = None
    if out.pred_loss is not None:
        pair_loss = ll_pair_loss(losses, out.pred_loss.float(), random_pairs(len(losses), generator), cfg.ll_margin)
        loss = loss + cfg.ll_lambda * pair_loss
        ll_loss = pair_loss.item()
    optimizers.zero_grad()
    loss.backward()
    optimizers.step()
    return StepResult(len(losses), losses.sum().item(), ll_loss)


def _rank0_decides(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (a one-element broadcast; as is without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def fit(
    model: nn.Module,
    cfg: TrainConfig,
    train_batches: EpochSource,
    device: torch.device,
    report: ReportFn,
    *,
    val_batches: EpochSource | None = None,
    ddp_model: nn.Module | None = None,
    rank: int = 0,
    checkpoint: CheckpointPolicy | None = None,
    resume_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` (an ``ALNet`` already on ``device``) for ``cfg.epochs`` epochs.

    ``train_batches(epoch)`` / ``val_batches(epoch)`` yield decoded batches
    (``raydal.training.sources``). ``ddp_model``: the DDP wrapper of ``model``
    to run forward/backward through (data parallel); ``rank``: this worker's
    rank (0 validates and writes checkpoints). ``checkpoint``: when rank 0
    passes a checkpoint folder (model + optimizer state) to ``report``
    (``CheckpointPolicy``); None never. ``resume_dir``: such a folder to
    continue from (weights, optimizers, epoch, history).

    Returns the history: one dict of scalars per epoch (``epoch`` 1-based,
    ``lr``, ``train_loss`` (mean BCE, this rank's samples), ``train_ll_loss``,
    ``ll_stopped``, ``train_samples``, ``seconds``, and ``val_*`` metrics on
    validated epochs).
    """
    net = model
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    optimizers = make_optimizers(net, cfg)
    sgd, adam = optimizers

    start_epoch, history = 0, []
    if resume_dir is not None:
        load_weights_into(net, resume_dir)
        state = torch.load(Path(resume_dir) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
        sgd.load_state_dict(state["sgd"])
        if adam is not None:
            adam.load_state_dict(state["adam"])
        start_epoch, history = state["epoch"], list(state["history"])

    last_checkpoint = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, rank))
        lr = cfg.lr_at(epoch)
        optimizers.set_lr(lr)
        stopped = epoch >= cfg.ll_stop_epoch
        net.train()
        n_seen, bce_sum, ll_sum, n_pair_batches = 0, 0.0, 0.0, 0
        for batch in train_batches(epoch):
            if len(batch["image"]) < 2:
                continue  # BatchNorm and pairing need two samples
            step = train_step(
                net, batch, cfg, optimizers, device=device, generator=gen, ll_stopped=stopped, ddp_model=ddp_model
            )
            n_seen += step.samples
            bce_sum += step.bce_sum
            if step.ll_loss is not None:
                ll_sum += step.ll_loss
                n_pair_batches += 1
        if n_seen == 0:
            raise ConfigError(
                f"Epoch {epoch + 1} got no training batch of >= 2 samples: the labeled set is empty or too "
                "small for the number of workers."
            )
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": bce_sum / n_seen,
            "train_ll_loss": ll_sum / n_pair_batches if n_pair_batches else float("nan"),
            "ll_stopped": stopped,
            "train_samples": n_seen,
        }
        last = epoch + 1 == cfg.epochs
        if val_batches is not None and rank == 0 and ((epoch + 1) % cfg.eval_every == 0 or last):
            scores = evaluate(net, val_batches(epoch), device, cfg.threshold, cfg.amp)
            metrics.update({f"val_{k}": v for k, v in scores.items() if k != "per_class_f1"})
        metrics["seconds"] = time.perf_counter() - t0
        history.append(metrics)

        due = checkpoint is not None and checkpoint.due(epoch + 1, cfg.epochs, time.perf_counter() - last_checkpoint)
        if ddp_model is not None and checkpoint is not None and checkpoint.every_seconds is not None:
            due = _rank0_decides(due, device)  # clocks differ between ranks
        metrics["checkpointed"] = due
        if rank == 0 and due:
            folder = Path(tempfile.mkdtemp(prefix=f"raydal-ckpt-e{epoch + 1}-"))
            try:
                save_checkpoint(
                    folder, net, extra={"epoch": epoch + 1, "metrics": metrics, "train_config": cfg.to_dict()}
                )
                torch.save(
                    {
                        "epoch": epoch + 1,
                        "history": history,
                        "sgd": sgd.state_dict(),
                        "adam": adam.state_dict() if adam is not None else None,
                    },
                    folder / TRAIN_STATE_FILE,
                )
                report(metrics, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            last_checkpoint = time.perf_counter()
        else:
            report(metrics, None)
    return history
