"""In-memory learnable multi-label data for training tests (no shards needed)."""

import numpy as np
import pytest

QUADRANTS = [
    (slice(0, 16), slice(0, 16)),
    (slice(0, 16), slice(16, 32)),
    (slice(16, 32), slice(0, 16)),
    (slice(16, 32), slice(16, 32)),
]


def learnable_split(n: int, seed: int, classes: int = 4) -> dict:
    """32x32x3 noise; class c present -> quadrant c brightened in band c % 3."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < 0.4).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    image = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.uint8)
    for c in range(classes):
        rows, cols = QUADRANTS[c % 4]
        image[labels[:, c] == 1, rows, cols, c % 3] += 150
    return {"id": np.array([f"s{seed}-{i}" for i in range(n)]), "image": image, "labels": labels}


@pytest.fixture(scope="session")
def train_split() -> dict:
    return learnable_split(160, seed=0)


@pytest.fixture(scope="session")
def val_split() -> dict:
    return learnable_split(80, seed=1)
