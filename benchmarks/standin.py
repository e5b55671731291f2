"""A STAND-IN model for orchestration benchmarks: a fixed sleep per forward pass instead of convolutions.

Not part of raydal and never registered by it: the benchmarks register it in
their own processes and, through Ray's ``worker_process_setup_hook``
(``"standin.register"``, with this folder on ``PYTHONPATH``), in every Ray
worker. Each forward pass sleeps ``RAYDAL_STANDIN_MS`` milliseconds plus
``RAYDAL_STANDIN_MS_PER_ROW`` per row (a GPU's time grows with the batch),
which releases the GIL as a process waiting on a GPU kernel would, so that 2 CPU
cores do not limit how many "accelerators" run at once. Its outputs are a
deterministic function of the input pixels (same input, same bits, on any
process), with the shapes of a real backbone's: hidden maps ``[N, 16, 1, 1]``
and an embedding ``[N, 16]``; ``raydal.models.ALNet`` adds the real head and LL
module on top, so checkpoints, training and scoring run unchanged.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from raydal.models.backbones import Backbone

#: Milliseconds each forward pass sleeps, and per row (read when the model is built).
LATENCY_ENV = "RAYDAL_STANDIN_MS"
LATENCY_ROW_ENV = "RAYDAL_STANDIN_MS_PER_ROW"
#: A folder where every process logs its forward passes (set it before the cluster starts).
FORWARD_LOG_ENV = "RAYDAL_STANDIN_FORWARD_LOG"
NAME = "standin_sleep"
#: Embedding width D (``RAYDAL_STANDIN_EMBED``, read on import: set it before workers start).
EMBED = int(os.environ.get("RAYDAL_STANDIN_EMBED", "16"))


class SleepBackbone(Backbone):
    """Sleeps (logging the pass where ``FORWARD_LOG_ENV`` names a folder), then maps the per-band pixel means through a fixed projection (trainable, tiny)."""

    feature_channels = (EMBED,)
    embed_dim = EMBED
    first_conv_key = "proj.weight"

    def __init__(self, in_channels: int, latency_s: float, latency_row_s: float):
        super().__init__()
        self.latency_s = latency_s
        self.latency_row_s = latency_row_s
        self.proj = nn.Linear(in_channels, EMBED)

    def forward(self, x: torch.Tensor):
        start = time.time()
        time.sleep(self.latency_s + self.latency_row_s * len(x))
        log = os.environ.get(FORWARD_LOG_ENV)
        if log:  # one line per forward pass: pid, wall start, wall end, rows (the benchmark's busy windows)
            with open(os.path.join(log, f"forward-{os.getpid()}.txt"), "a") as f:
                f.write(f"{os.getpid()} {start:.6f} {time.time():.6f} {len(x)}\n")
        # A pixel's value spread over many frequencies: distinct inputs give distinct, varied outputs.
        pooled = x.mean(dim=(2, 3)) * 255.0
        emb = torch.sin(self.proj(pooled) * 7.0) + 1.0
        return [emb[:, :, None, None]], emb


def standin_sleep(in_channels: int) -> SleepBackbone:
    return SleepBackbone(
        in_channels,
        float(os.environ.get(LATENCY_ENV, "0")) / 1000.0,
        float(os.environ.get(LATENCY_ROW_ENV, "0")) / 1000.0,
    )


def register() -> None:
    """Register the stand-in under ``standin_sleep`` (the Ray worker setup hook; idempotent)."""
    from raydal.models.registry import _BUILDERS, register_model

    if NAME not in _BUILDERS:
        register_model(standin_sleep)
