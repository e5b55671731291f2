"""Seeded batch augmentation on tensors: horizontal flip and rotation by k * 90 degrees."""

from __future__ import annotations

import torch


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per sample of ``x [N, B, H, W]``: flip horizontally with probability 1/2,
    then rotate by k * 90 degrees, k uniform in {0, 1, 2, 3} ({0, 2} if H != W).

    ``generator`` (a CPU generator) draws the choices, so a seed fixes them.
    Returns a new tensor; ``x`` is not modified.
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    k = torch.randint(0, 4, (n,), generator=generator)
    if x.shape[2] != x.shape[3]:
        k = (k // 2) * 2  # a quarter turn would change the shape
    out = x.clone()
    idx = flip.nonzero().squeeze(1).to(x.device)
    if idx.numel():
        out[idx] = out[idx].flip(-1)
    for turns in (1, 2, 3):
        idx = (k == turns).nonzero().squeeze(1).to(x.device)
        if idx.numel():
            out[idx] = torch.rot90(out[idx], turns, dims=(2, 3))
    return out
