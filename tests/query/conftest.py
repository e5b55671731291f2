"""Fixtures for query tests: a seeded untrained SmallCNN with a loss head over the tiny shards
(``manifest``: tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def model(manifest):
    from raydal.models import create_model

    torch.manual_seed(0)
    return create_model("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands, ll=True).eval()
