"""The fake-archive generators: real profiles, determinism, imbalanced labels."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from raydal.data.synth import synthesize
from raydal.data.synth.painter import MAX_LABELS, paint, sample_labels
from raydal.exceptions import ConfigError


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dataset", ["ucmerced", "treesatai", "bigearthnet"])
def test_same_seed_same_archive(tmp_path, dataset):
    a = _files(synthesize(dataset, tmp_path / "a", n=12, size=12, seed=7))
    b = _files(synthesize(dataset, tmp_path / "b", n=12, size=12, seed=7))
    c = _files(synthesize(dataset, tmp_path / "c", n=12, size=12, seed=8))
    assert a == b
    assert a != c


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize("ucmerced", tmp_path, n=5, size=16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dataset": "eurosat"}, "'dataset'"), ({"n": 0}, "'n'"), ({"size": 4}, "'size'"), ({"difficulty": 2.0}, "'difficulty'")],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"dataset": "ucmerced", "out_dir": tmp_path / "a", "n": 5, "size": 16} | kwargs
    with pytest.raises(ConfigError, match=match):
        synthesize(**args)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_ucmerced_profile(ucm_root):
    path = ucm_root / "UCMerced_LandUse/Images/agricultural/agricultural00.tif"
    with rasterio.open(path) as src:
        assert (src.count, src.dtypes[0], src.crs) == (3, "uint8", None)
    assert len(list(ucm_root.glob("UCMerced_LandUse/Images/*"))) == 21
    assert b"\r\n" in (ucm_root / "LandUse_Multilabeled.txt").read_bytes()


def test_ucmerced_n_is_capped_at_the_real_count(tmp_path):
    with pytest.raises(ConfigError, match="'n'"):
        synthesize("ucmerced", tmp_path, n=2101, size=16)


def test_treesatai_profiles(treesat_root):
    name = sorted(p.name for p in (treesat_root / "aerial/60m").iterdir())[0]
    with rasterio.open(treesat_root / "aerial/60m" / name) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg(), src.width) == (4, "uint8", 25832, 24)
        assert src.transform.a == pytest.approx(60.8 / 24)
    with rasterio.open(treesat_root / "s1/60m" / name) as src:
        assert (src.count, src.dtypes[0], src.nodata, src.crs.to_epsg(), src.shape) == (3, "float32", -9999.0, 32632, (6, 6))
    with rasterio.open(treesat_root / "s2/60m" / name) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg(), src.shape) == (12, "uint16", 32632, (6, 6))
    train = (treesat_root / "train_filenames.lst").read_text().split()
    test = (treesat_root / "test_filenames.lst").read_text().split()
    assert len(test) == 6 and len(train) == 54 and not set(train) & set(test)


def test_bigearthnet_profiles(ben_root):
    folder = next((ben_root / "BigEarthNet-S2").glob("*/*"))
    sizes = {}
    for path in folder.iterdir():
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes[0], src.crs.to_epsg()) == (1, "uint16", 32632)
            sizes[path.stem.rsplit("_", 1)[1]] = (src.width, src.transform.a)
    assert sizes["B02"] == (24, 10.0) and sizes["B8A"] == (12, 20.0) and sizes["B09"] == (4, 60.0)
    assert len(sizes) == 12


def test_bigearthnet_size_must_split_into_60m_pixels(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 6"):
        synthesize("bigearthnet", tmp_path, n=2, size=32)


def test_labels_are_imbalanced_and_never_empty():
    priors = np.array([0.6, 0.3, 0.1, 0.02])
    labels = sample_labels(20000, priors, np.random.default_rng(0))
    freq = labels.mean(0)
    assert labels.sum(1).min() >= 1 and labels.sum(1).max() <= MAX_LABELS
    assert freq[0] > freq[1] > freq[2] > freq[3] > 0
    empty = np.prod(1 - priors)  # rows drawn empty get one label, in proportion to the priors
    np.testing.assert_allclose(freq, priors + empty * priors / priors.sum(), atol=0.02)


def test_each_label_paints_its_own_colour():
    """One image per class, each with that class alone: its marked slot has the class colour."""
    labels = np.eye(6, dtype=np.uint8)
    images = paint(labels, (30, 30), 3, np.random.default_rng(0), difficulty=0.0).astype(float)
    slots = images.reshape(6, 3, 10, 3, 10, 3).mean((2, 4)).reshape(6, 9, 3)  # [image, slot, band]
    background = np.median(slots, axis=1, keepdims=True)
    marked = np.abs(slots - background).sum(-1).argmax(1)
    colours = slots[np.arange(6), marked]
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)[np.triu_indices(6, 1)]
    assert distances.min() > 30.0
