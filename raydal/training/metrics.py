"""Multi-label metrics and evaluation of a model on decoded batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from raydal.exceptions import ConfigError
from raydal.training.config import autocast_dtype


def default_threshold() -> float:
    """The run's default probability threshold: ``TrainConfig.threshold`` (``--f1-threshold``), declared once."""
    from raydal.training.config import TrainConfig

    return TrainConfig.__dataclass_fields__["threshold"].default


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """Scores of sigmoid probabilities against multi-hot labels.

    ``y_true``: ``[N, C]`` in {0, 1}; ``probs``: ``[N, C]`` sigmoid probabilities
    (not softmax). A class is predicted when ``prob >= threshold`` (None: the
    run's default, :func:`default_threshold`; a run passes its own).
    Returns ``micro_f1``, ``macro_f1``, ``micro_precision``, ``micro_recall``,
    ``macro_precision``, ``macro_recall`` (0 where undefined), ``per_class_f1``
    (list of C), ``macro_f1_present``, ``n_present_classes``, ``mAP`` (mean
    average precision over the classes with at least one positive; NaN if none
    has) and ``n_samples``.

    ``macro_f1`` averages over all C classes (a class absent from ``y_true``
    scores 0 whether or not it is predicted); ``macro_f1_present`` averages only
    over the ``n_present_classes`` classes with at least one positive in
    ``y_true`` (NaN if none has). On a split where 4 of 19 classes occur,
    ``macro_f1`` cannot exceed 4/19 = 21 %; ``macro_f1_present`` can reach 100 %.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.ndim != 2 or probs.shape != y_true.shape:
        raise ConfigError(
            "multilabel_metrics needs 'y_true' and 'probs' as [N, C] arrays of equal shape. "
            f"Got {y_true.shape} and {probs.shape} instead."
        )
    if not np.isfinite(probs).all():
        raise ConfigError("The 'probs' parameter of multilabel_metrics holds NaN or inf: the model diverged.")
    y_true = (y_true > 0).astype(np.int64)
    y_pred = (probs >= (default_threshold() if threshold is None else threshold)).astype(np.int64)
    out: dict[str, Any] = {"n_samples": int(y_true.shape[0])}
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)})
    _, _, per_class, _ = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_class_f1"] = [float(v) for v in per_class]
    has_pos = y_true.sum(axis=0) > 0
    out["macro_f1_present"] = float(per_class[has_pos].mean()) if has_pos.any() else float("nan")
    out["n_present_classes"] = int(has_pos.sum())
    out["mAP"] = (
        float(np.mean([average_precision_score(y_true[:, c], probs[:, c]) for c in np.flatnonzero(has_pos)]))
        if has_pos.any()
        else float("nan")
    )
    return out


def empty_metrics(num_classes: int) -> dict[str, Any]:
    """The metrics of an empty evaluation split: ``n_samples`` 0 and NaN scores.

    An archive without labeled test (or val) images gives these; reports say so
    instead of drawing a curve.
    """
    nan = float("nan")
    out: dict[str, Any] = {
        "n_samples": 0,
        "mAP": nan,
        "loss": nan,
        "per_class_f1": [nan] * num_classes,
        "macro_f1_present": nan,
        "n_present_classes": 0,
    }
    for avg in ("micro", "macro"):
        out.update({f"{avg}_precision": nan, f"{avg}_recall": nan, f"{avg}_f1": nan})
    return out


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, np.ndarray]],
    device: torch.device | str | None = None,
    threshold: float | None = None,
    amp: str = "auto",
    return_probs: bool = False,
) -> dict[str, Any]:
    """Score ``model`` (an ``ALNet``) on decoded batches ``{"image": uint8 [N, H, W, B],
    "labels": uint8 [N, C]}``.

    Returns ``multilabel_metrics`` (at ``threshold``; None: the default) plus ``loss`` (mean per-sample BCE, eq. 1);
    with ``return_probs`` also ``probs [N, C]`` (float32), ``labels [N, C]`` and,
    when the batches carry them, ``ids [N]``. The model's train/eval mode is restored.
    """
    from raydal.models import bce_per_sample, preprocess, unwrap

    net = unwrap(model)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    dtype = autocast_dtype(amp, device)
    was_training = net.training
    net.eval()
    probs, labels, ids, loss_sum = [], [], [], 0.0
    try:
        for batch in batches:
            x = preprocess(batch["image"], device)
            y = torch.from_numpy(np.array(batch["labels"], dtype=np.uint8)).to(device)  # copy: may be read-only
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = net(x).logits.float()
            loss_sum += bce_per_sample(logits, y).sum().item()
            probs.append(torch.sigmoid(logits).cpu().numpy())
            labels.append(np.asarray(batch["labels"]))
            if "id" in batch:
                ids.append(np.asarray(batch["id"]))
    finally:
        net.train(was_training)
    if not probs:
        raise ConfigError("evaluate got no batches: the evaluation split is empty.")
    all_probs, all_labels = np.concatenate(probs), np.concatenate(labels)
    out = multilabel_metrics(all_labels, all_probs, threshold)
    out["loss"] = loss_sum / len(all_probs)
    if return_probs:
        out.update(probs=all_probs.astype(np.float32), labels=all_labels)
        if ids:
            out["ids"] = np.concatenate(ids)
    return out
