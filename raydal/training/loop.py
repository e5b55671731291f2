"""The one training loop (method.md, "LL" and "Training protocol"), used by both launchers.

Per batch: augment, forward, per-sample BCE (eq. 1); with the LL module, random
pairs inside the batch and the joint loss (eq. 3); SGD steps the backbone and
head, Adam the LL module, both at ``cfg.lr`` with step decay at
``cfg.lr_decay_epoch``. From ``cfg.ll_stop_epoch`` on the LL module reads
detached features, so its loss no longer changes the backbone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raydal.constants import TRAIN_STATE_FILE
from raydal.exceptions import ConfigError
from raydal.models import bce_per_sample, ll_pair_loss, load_weights_into, preprocess, random_pairs, save_checkpoint
from raydal.training.augment import augment_batch
from raydal.training.config import TrainConfig
from raydal.training.metrics import autocast_dtype, evaluate
from raydal.training.sources import EpochSource

#: ``report(metrics, checkpoint_dir)``: called once per epoch on every rank;
#: ``checkpoint_dir`` is a folder valid only during the call, or ``None``.
ReportFn = Callable[[dict[str, Any], "Path | None"], None]



def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the augmentation/pairing generator for one epoch on one rank."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


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
    checkpoint_every: int = 0,
    resume_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` (an ``ALNet`` already on ``device``) for ``cfg.epochs`` epochs.

    ``train_batches(epoch)`` / ``val_batches(epoch)`` yield decoded batches
    (``raydal.training.sources``). ``ddp_model``: the DDP wrapper of ``model``
    to run forward/backward through (data parallel); ``rank``: this worker's
    rank (0 validates and writes checkpoints). ``checkpoint_every``: rank 0
    passes a checkpoint folder (model + optimizer state) to ``report`` every
    this many epochs and after the last; 0 never. ``resume_dir``: such a folder
    to continue from (weights, optimizers, epoch, history).

    Returns the history: one dict of scalars per epoch (``epoch`` 1-based,
    ``lr``, ``train_loss`` (mean BCE, this rank's samples), ``train_ll_loss``,
    ``ll_stopped``, ``train_samples``, ``seconds``, and ``val_*`` metrics on
    validated epochs).
    """
    if checkpoint_every < 0:
        raise ConfigError(f"The 'checkpoint_every' parameter of fit must be an int >= 0. Got {checkpoint_every}.")
    net = model
    forward = ddp_model if ddp_model is not None else net
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    main_params, ll_params = net.parameter_groups()
    sgd = torch.optim.SGD(main_params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    adam = torch.optim.Adam(ll_params, lr=cfg.lr) if ll_params else None
    dtype = autocast_dtype(cfg.amp, device)

    start_epoch, history = 0, []
    if resume_dir is not None:
        load_weights_into(net, resume_dir)
        state = torch.load(Path(resume_dir) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
        sgd.load_state_dict(state["sgd"])
        if adam is not None:
            adam.load_state_dict(state["adam"])
        start_epoch, history = state["epoch"], list(state["history"])

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, rank))
        lr = cfg.lr_at(epoch)
        for opt in (sgd, adam):
            for group in (opt.param_groups if opt is not None else []):
                group["lr"] = lr
        stopped = epoch >= cfg.ll_stop_epoch
        net.train()
        n_seen, bce_sum, ll_sum, n_pair_batches = 0, 0.0, 0.0, 0
        for batch in train_batches(epoch):
            if len(batch["image"]) < 2:
                continue  # BatchNorm and pairing need two samples
            x = preprocess(batch["image"], device)
            y = torch.from_numpy(np.array(batch["labels"], dtype=np.uint8)).to(device)  # copy: may be read-only
            if y.shape[1] != net.num_classes:
                raise ConfigError(
                    f"Batch labels have {y.shape[1]} classes but the model has {net.num_classes}: "
                    "build the model with the archive's class count."
                )
            if cfg.augment:
                x = augment_batch(x, gen)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = forward(x, detach_ll=stopped)
            losses = bce_per_sample(out.logits, y)
            loss = losses.mean()
            if out.pred_loss is not None:
                pair_loss = ll_pair_loss(losses, out.pred_loss.float(), random_pairs(len(losses), gen), cfg.ll_margin)
                loss = loss + cfg.ll_lambda * pair_loss
                ll_sum += pair_loss.item()
                n_pair_batches += 1
            sgd.zero_grad(set_to_none=True)
            if adam is not None:
                adam.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            if adam is not None:
                adam.step()
            n_seen += len(losses)
            bce_sum += losses.sum().item()
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

        if rank == 0 and checkpoint_every and ((epoch + 1) % checkpoint_every == 0 or last):
            folder = Path(tempfile.mkdtemp(prefix=f"raydal-ckpt-e{epoch + 1}-"))
            try:
                save_checkpoint(folder, net, extra={"epoch": epoch + 1, "metrics": metrics,
                                                    "train_config": cfg.to_dict()})
                torch.save(
                    {"epoch": epoch + 1, "history": history, "sgd": sgd.state_dict(),
                     "adam": adam.state_dict() if adam is not None else None},
                    folder / TRAIN_STATE_FILE,
                )
                report(metrics, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            report(metrics, None)
    return history
