"""Decoded uint8 images to the float tensors the models read."""

from __future__ import annotations

import numpy as np
import torch

from raydal.exceptions import ConfigError


def preprocess(images: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``[N, H, W, B]`` -> float32 ``[N, B, H, W]`` in [0, 1] on ``device``.

    The uint8 array is moved first (4x less to transfer) and converted there.
    On CUDA the result is in channels_last memory format, which the permute of
    an ``[N, H, W, B]`` array already is; on CPU it is made contiguous NCHW.
    """
    if isinstance(images, np.ndarray):
        if not images.flags.writeable:  # e.g. decoded straight from Parquet bytes; torch wants writable memory
            images = images.copy()
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}"
        raise ConfigError(
            f"The 'images' parameter of preprocess must be a uint8 [N, H, W, B] array. Got {got} instead."
        )
    device = torch.device(device) if device is not None else images.device
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()
