"""Tiny fake archives of every dataset, generated once per session by the real generators."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raydal.data.synth import synthesize


@pytest.fixture(scope="session")
def ucm_root(tmp_path_factory) -> Path:
    """UC Merced: 60 images of ~24 px (some at the odd sizes), CRLF label file."""
    return synthesize("ucmerced", tmp_path_factory.mktemp("ucm") / "archive", n=60, size=24, seed=1)


@pytest.fixture(scope="session")
def treesat_root(tmp_path_factory) -> Path:
    """TreeSatAI with the ``aerial/60m`` layout: 60 patches of 24 px."""
    return synthesize("treesatai", tmp_path_factory.mktemp("tsa") / "archive", n=60, size=24, seed=2)


@pytest.fixture(scope="session")
def treesat_species_root(tmp_path_factory) -> Path:
    """The same TreeSatAI archive unpacked the other way: ``aerial_60m/<species>/``."""
    return synthesize(
        "treesatai", tmp_path_factory.mktemp("tsa2") / "archive", n=60, size=24, seed=2, layout="aerial_60m"
    )


@pytest.fixture(scope="session")
def ben_root(tmp_path_factory) -> Path:
    """BigEarthNet v2: 40 patches, 10 m bands 24 px (20 m: 12 px, 60 m: 4 px)."""
    return synthesize("bigearthnet", tmp_path_factory.mktemp("ben") / "archive", n=40, size=24, seed=3)


@pytest.fixture
def copy_archive(tmp_path):
    """Copy a session archive so a test can break it."""

    def copy(root: Path) -> Path:
        return Path(shutil.copytree(root, tmp_path / "archive"))

    return copy
