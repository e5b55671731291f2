"""Loading a local weights file into a backbone, adapting the first conv to the band count.

Accepted files (``torch.save`` of a state dict, optionally wrapped as ``{"state_dict": ...}``):

* a torchvision state dict of the same architecture, e.g. ImageNet weights a
  user has on disk (``densenet121-a639ec97.pth``). Its classifier
  (``classifier.*`` / ``fc.*``) is dropped: the head is trained for the
  archive's classes. DenseNet's legacy key names (``norm.1``) are renamed and
  BatchNorm's ``num_batches_tracked``, absent from old files, is set to 0.
* a raydal ``model.pt`` (keys ``backbone.*``, ``head.*``, ``ll.*``): only the
  backbone is taken, e.g. to transfer a model trained on another archive.

Band adaptation of a 3-band (RGB) first-conv kernel ``W [O, 3, k, k]`` to ``B``
bands: every band starts from the mean RGB kernel, the RGB kernels are kept on
the bands named by ``rgb_bands`` (default: bands 0, 1, 2; ``B >= 3`` only), then
everything is multiplied by ``3 / B``. The sum over input bands is unchanged,
so a constant image gives the first layer the same response as the RGB model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch

from raydal.exceptions import ModelError
from raydal.settings import param_error

#: DenseNet checkpoints from torchvision's model zoo use ``denselayerN.norm.1``.
_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def adapt_first_conv_weight(
    weight: torch.Tensor, in_channels: int, rgb_bands: Sequence[int] | None = None
) -> torch.Tensor:
    """Adapt a first-conv kernel ``[O, S, k, k]`` to ``in_channels`` input bands.

    ``S == in_channels``: returned unchanged (unless ``S == 3`` and ``rgb_bands`` reorders). ``S == 3``: see the module
    docstring (mean-RGB init, RGB kernels on ``rgb_bands``, times ``3 / B``).
    Other combinations raise ``ModelError``.
    """
    src = weight.shape[1]
    if src == in_channels and (rgb_bands is None or src != 3):
        return weight
    if src != 3:
        raise ModelError(
            f"Cannot adapt a first-conv weight with {src} input bands to {in_channels} bands: "
            "only 3-band (RGB) weights are adapted. Use weights trained on the same band count."
        )
    if rgb_bands is None:
        rgb_bands = (0, 1, 2) if in_channels >= 3 else ()
    rgb_bands = tuple(int(b) for b in rgb_bands)
    if rgb_bands and (
        len(rgb_bands) != 3 or len(set(rgb_bands)) != 3 or not all(0 <= b < in_channels for b in rgb_bands)
    ):
        raise param_error(
            "rgb_bands",
            "adapt_first_conv_weight",
            f"3 distinct band indices in [0, {in_channels}) (the bands holding R, G, B)",
            rgb_bands,
            ModelError,
        )
    mean = weight.mean(dim=1, keepdim=True)
    out = mean.repeat(1, in_channels, 1, 1)
    for i, band in enumerate(rgb_bands):
        out[:, band] = weight[:, i]
    return out * (3.0 / in_channels)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict file onto the CPU (``{"state_dict": ...}`` wrappers unwrapped)."""
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise ModelError(f"Weights file {path} does not exist: check the 'weights' path.") from err
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ModelError(
            f"Could not read weights file {path}: {err}. It must be a state dict written by "
            "torch.save(model.state_dict(), path)."
        ) from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(
            f"Weights file {path} does not hold a state dict (a mapping of names to tensors). "
            "Save one with torch.save(model.state_dict(), path)."
        )
    return obj


def load_backbone_weights(
    backbone: "raydal.models.backbones.Backbone",  # noqa: F821
    path: str | os.PathLike,
    in_channels: int,
    rgb_bands: Sequence[int] | None = None,
) -> None:
    """Load the weights file at ``path`` into ``backbone`` (in place, strict).

    Raises ``ModelError`` naming the missing, unexpected or mis-shaped keys.
    """
    state = read_state_dict(path)
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    else:
        state = {k: v for k, v in state.items() if not k.startswith(backbone.classifier_prefixes or ("\0",))}
    renamed = {}
    for key, value in state.items():
        m = _LEGACY_DENSENET_KEY.match(key)
        renamed[m.group(1) + m.group(2) if m else key] = value
    state = renamed

    key = backbone.first_conv_key
    if key in state:
        state[key] = adapt_first_conv_weight(state[key], in_channels, rgb_bands)

    own = backbone.state_dict()
    for k in own:  # files saved before PyTorch 0.4.1 (the model zoo's) lack this BatchNorm counter
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(own[k])
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or mis_shaped:
        name = type(backbone).__name__
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if items:
                more = f" ... and {len(items) - 5} more" if len(items) > 5 else ""
                parts.append(f"{label} ({len(items)}): {', '.join(items[:5])}{more}")
        raise ModelError(
            f"Weights file {path} does not fit {name}: "
            + "; ".join(parts)
            + ". Pass weights of the same architecture (a torchvision state dict or a raydal model.pt)."
        )
    backbone.load_state_dict(state, strict=True)
