"""The archive readers on fake archives written in the published layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from raydal.data import get_reader, list_datasets, register_dataset
from raydal.data.bigearthnet import BigEarthNetReader, product_of
from raydal.data.treesatai import TreeSatAIReader
from raydal.data.ucmerced import UCMercedReader
from raydal.exceptions import ConfigError, DatasetNotFoundError


def _raw(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1)


# -- registry ------------------------------------------------------------------------


def test_registry_lists_every_dataset():
    assert list_datasets() == ["bigearthnet", "folder", "treesatai", "ucmerced"]


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    with pytest.raises(ConfigError, match="bigearthnet.*treesatai.*ucmerced"):
        get_reader("eurosat", tmp_path)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset(UCMercedReader)


@pytest.mark.parametrize("name", ["ucmerced", "treesatai", "bigearthnet"])
def test_missing_archive_says_where_it_looked_and_how_to_fix(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as info:
        get_reader(name, tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert f"raydal synth {name}" in str(info.value)
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        get_reader(name, tmp_path)  # exists, but empty


# -- UC Merced -----------------------------------------------------------------------


def _ucm_rows(root) -> dict[str, np.ndarray]:
    lines = (root / "LandUse_Multilabeled.txt").read_bytes().decode().split("\r\n")
    assert lines[0].split("\t")[0] == "IMAGE\\LABEL"
    return {r.split("\t")[0]: np.array(r.split("\t")[1:], dtype=np.uint8) for r in lines[1:] if r}


def test_ucmerced_index_matches_files_and_label_rows(ucm_root):
    index = get_reader("ucmerced", ucm_root).index()
    rows = _ucm_rows(ucm_root)
    assert index.classes == list(UCMercedReader.classes) and len(index.classes) == 17
    assert index.band_names == ["R", "G", "B"]
    assert sorted(index.ids) == sorted(rows) and len(index) == 60
    for id_, path, target in zip(index.ids, index.paths, index.labels):
        assert path.endswith(f"UCMerced_LandUse/Images/{id_.rstrip('0123456789')}/{id_}.tif")
        np.testing.assert_array_equal(target, rows[id_])
    assert index.labels.dtype == np.uint8 and index.labels.sum(1).min() >= 1
    assert set(index.splits) == {""}  # UC Merced publishes no split


def test_ucmerced_loads_odd_sized_images(ucm_root):
    reader = get_reader("ucmerced", ucm_root)
    shapes = {reader.load_image(p).shape for p in reader.index().paths}
    assert (24, 24, 3) in shapes
    assert (24, 23, 3) in shapes  # 256x249 scaled to 24 px
    assert (23, 23, 3) in shapes  # 247x247


def test_ucmerced_label_file_parsing_is_lenient(copy_archive, ucm_root):
    root = copy_archive(ucm_root)
    label_file = root / "LandUse_Multilabeled.txt"
    lines = label_file.read_text().splitlines()
    # Spaces instead of tabs, rows in another order, padding, LF line ends, a blank line.
    rewritten = [lines[0].replace("\t", "   ")] + [
        "  " + " ".join(line.split("\t")) + " " for line in reversed(lines[1:])
    ]
    label_file.write_text("\n".join(rewritten[:5] + [""] + rewritten[5:]) + "\n")
    expected = get_reader("ucmerced", ucm_root).index()
    index = get_reader("ucmerced", root).index()
    order = [index.ids.index(i) for i in expected.ids]
    np.testing.assert_array_equal(index.labels[order], expected.labels)


def test_ucmerced_finds_the_label_file_in_multilabels(copy_archive, ucm_root):
    root = copy_archive(ucm_root)
    (root / "multilabels").mkdir()
    (root / "LandUse_Multilabeled.txt").rename(root / "multilabels" / "LandUse_Multilabeled.txt")
    assert len(get_reader("ucmerced", root).index()) == 60


# -- TreeSatAI -------------------------------------------------------------------------


def test_treesatai_index_follows_json_and_lists(treesat_root):
    index = get_reader("treesatai", treesat_root).index()
    entries = json.loads((treesat_root / "labels/TreeSatBA_v9_60m_multi_labels.json").read_text())
    test_names = set((treesat_root / "test_filenames.lst").read_text().split())
    assert len(index) == 60 and len(index.classes) == 15
    for id_, path, target, split in zip(index.ids, index.paths, index.labels, index.splits):
        name = f"{id_}.tif"
        kept = {genus for genus, fraction in entries[name] if fraction > 0.07}
        assert {index.classes[c] for c in np.flatnonzero(target)} == kept
        assert split == ("test" if name in test_names else "train")
        assert path.endswith(f"aerial/60m/{name}")


def test_treesatai_both_aerial_layouts_give_the_same_index(treesat_root, treesat_species_root):
    flat = get_reader("treesatai", treesat_root).index()
    nested = get_reader("treesatai", treesat_species_root).index()
    assert flat.ids == nested.ids
    np.testing.assert_array_equal(flat.labels, nested.labels)
    assert all("/aerial_60m/" in p for p in nested.paths)
    reader = get_reader("treesatai", treesat_species_root)
    assert reader.load_image(nested.paths[0]).shape == (24, 24, 4)


def test_treesatai_spec_names_load(treesat_root):
    reader = get_reader("treesatai", treesat_root)
    index = reader.index()
    spec = [p for p in index.paths if "_spec._" in p]
    assert spec, "the generator writes genus 'spec.' names such as Alnus_spec._5_13114_WEFL_NLF.tif"
    assert reader.load_image(spec[0]).shape == (24, 24, 4)


def test_treesatai_threshold_drops_small_fractions(copy_archive, treesat_root):
    root = copy_archive(treesat_root)
    labels_path = root / "labels/TreeSatBA_v9_60m_multi_labels.json"
    entries = json.loads(labels_path.read_text())
    name = sorted(entries)[0]
    entries[name] = [["Fagus", 0.05], ["Picea", 0.85], ["Abies", 0.10]]
    labels_path.write_text(json.dumps(entries))

    def genera(**settings):
        index, _ = get_reader("treesatai", root, **settings).scan()  # 0.5 leaves some images without labels
        row = index.labels[index.ids.index(name[:-4])]
        return {index.classes[c] for c in np.flatnonzero(row)}

    assert genera() == {"Picea", "Abies"}  # 0.05 dropped, 0.10 kept at the default 0.07
    assert genera(threshold=0.0) == {"Picea", "Abies", "Fagus"}  # torchgeo's rule
    assert genera(threshold=0.5) == {"Picea"}


def test_treesatai_band_order_setting(treesat_root):
    default = get_reader("treesatai", treesat_root)
    path = default.index().paths[0]
    raw = _raw(path)  # the file's own band order
    # torchgeo reads the file as (IR, G, B, R); the output is always (R, G, B, NIR).
    np.testing.assert_array_equal(default.load_image(path), raw[..., [3, 1, 2, 0]])
    other = get_reader("treesatai", treesat_root, band_order="nir-rgb")
    np.testing.assert_array_equal(other.load_image(path), raw[..., [1, 2, 3, 0]])
    explicit = get_reader("treesatai", treesat_root, band_order=("IR", "G", "B", "R"))
    np.testing.assert_array_equal(explicit.load_image(path), default.load_image(path))
    assert default.settings()["band_order"] == ["NIR", "G", "B", "R"]


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"threshold": 1.5}, "'threshold'"),
        ({"band_order": "bgr"}, "'band_order'"),
        ({"band_order": ("R", "G", "B")}, "'band_order'"),
    ],
)
def test_treesatai_bad_settings(treesat_root, settings, match):
    with pytest.raises(ConfigError, match=match):
        TreeSatAIReader(treesat_root, **settings)


# -- BigEarthNet ------------------------------------------------------------------------


def test_bigearthnet_index_follows_metadata(ben_root):
    import pyarrow.parquet as pq

    meta = pq.read_table(ben_root / "metadata.parquet").to_pylist()
    index = get_reader("bigearthnet", ben_root).index()
    assert len(index) == len(meta) == 40 and len(index.classes) == 19
    assert "Land principally occupied by agriculture, with significant areas of natural vegetation" in index.classes
    by_id = {row["patch_id"]: row for row in meta}
    renamed = {"train": "train", "validation": "val", "test": "test"}
    for id_, path, target, split in zip(index.ids, index.paths, index.labels, index.splits):
        row = by_id[id_]
        assert {index.classes[c] for c in np.flatnonzero(target)} == set(row["labels"])
        assert split == renamed[row["split"]]
        assert path == str(ben_root / "BigEarthNet-S2" / product_of(id_) / id_)
        assert product_of(id_) == "_".join(id_.split("_")[:-2])


def test_bigearthnet_resamples_bands_and_scales_to_uint8(ben_root):
    reader = get_reader("bigearthnet", ben_root)
    folder = reader.index().paths[0]
    image = reader.load_image(folder)
    assert image.shape == (24, 24, 12) and image.dtype == np.uint8
    patch = folder.rsplit("/", 1)[1]
    b04 = _raw(f"{folder}/{patch}_B04.tif")[..., 0]  # 10 m, first loaded band
    assert b04.dtype == np.uint16 and b04.shape == (24, 24)
    expected = np.rint(np.minimum(b04, 4000).astype(np.float32) * 255 / 4000).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 0], expected)
    assert _raw(f"{folder}/{patch}_B05.tif").shape == (12, 12, 1)
    assert _raw(f"{folder}/{patch}_B01.tif").shape == (4, 4, 1)
    assert reader.scaling()["clip"] == [0, 4000]
    darker = BigEarthNetReader(ben_root, reflectance_max=8000).load_image(folder)
    assert darker[..., 0].mean() < image[..., 0].mean()
