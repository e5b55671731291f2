"""Checkpoint folders: ``model.pt`` (state dict) + ``model.json`` (ModelSpec + extra).

A Ray Train ``Checkpoint.from_directory(dir)`` wraps the same folder. Other
files in the folder (the training state that a resumed run reads) are ignored here.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raydal.constants import META_FILE, MODEL_FILE
from raydal.exceptions import ModelError
from raydal.models.factory import ModelSpec
from raydal.utils import atomic_write_bytes, atomic_write_strict_json, local_dir

CHECKPOINT_FORMAT = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (an ``ALNet``, DDP-wrapped or not) to the folder ``directory``.

    ``extra``: JSON-serialisable facts to keep next to the model (epoch,
    metrics, AL iteration). Returns the folder.
    """
    model = unwrap(model)
    if not hasattr(model, "spec"):
        raise ModelError(f"save_checkpoint needs an ALNet from create_model; got {type(model).__name__}.")
    directory = Path(directory)
    meta = {"format": CHECKPOINT_FORMAT, "model": model.spec, "extra": extra or {}}
    try:
        json.dumps(meta)
    except TypeError as err:
        raise ModelError(f"The 'extra' argument of save_checkpoint must be JSON-serialisable: {err}.") from err
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(directory / MODEL_FILE, buf.getvalue())
    atomic_write_strict_json(directory / META_FILE, meta)  # NaN metrics (none computed) as null
    return directory


def read_checkpoint_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """``model.json`` of a checkpoint folder: ``{"format", "model": ModelSpec fields, "extra"}``.

    ``directory`` may be a storage URI (``s3://...``): it is downloaded to a local cache once.
    """
    directory = local_dir(directory)
    if not (directory / MODEL_FILE).is_file() or not (directory / META_FILE).is_file():
        raise ModelError(
            f"{directory} is not a raydal checkpoint folder: it needs {MODEL_FILE} and {META_FILE} "
            "(written by raydal.models.save_checkpoint)."
        )
    try:
        meta = json.loads((directory / META_FILE).read_text())
        ModelSpec.from_dict(meta["model"])
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{directory / META_FILE} is corrupt ({err}); re-create the checkpoint.") from err
    return meta


def load_checkpoint(directory: str | os.PathLike, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild the ``ALNet`` saved in ``directory`` on ``device`` (default CPU), in eval mode.

    The model is rebuilt without its original weights file (the state dict holds every weight).
    """
    directory = local_dir(directory)
    meta = read_checkpoint_meta(directory)
    model = ModelSpec.from_dict(meta["model"]).build(weights=False)
    load_weights_into(model, directory)
    return model.to(device or "cpu").eval()


def load_weights_into(model: nn.Module, directory: str | os.PathLike) -> None:
    """Copy a checkpoint's weights into an existing ``model`` (warm start), checking they match."""
    target = unwrap(model)
    directory = local_dir(directory)
    meta = read_checkpoint_meta(directory)
    saved, own = meta["model"], getattr(target, "spec", {})
    keys = ("backbone", "num_classes", "in_channels", "ll", "ll_hidden")
    diff = {k: (saved.get(k), own.get(k)) for k in keys if saved.get(k) != own.get(k)}
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise ModelError(f"Checkpoint {directory} does not fit this model ({shown}). Use a matching ModelSpec.")
    try:
        state = torch.load(Path(directory) / MODEL_FILE, map_location="cpu", weights_only=True)
        target.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 - corrupt file or mismatched keys
        raise ModelError(f"Cannot load {Path(directory) / MODEL_FILE}: {err}") from err
