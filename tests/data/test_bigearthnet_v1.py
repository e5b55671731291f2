"""BigEarthNet v1 (43 CORINE classes, or 19 by the published mapping) on generated v1 archives."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from raydal.cli import main
from raydal.data import get_reader
from raydal.data.bigearthnet import CLASSES_43, NOMENCLATURE_19, BigEarthNetReader
from raydal.data.shards import load_manifest, prepare, read_split
from raydal.data.synth import synthesize
from raydal.exceptions import ConfigError, DatasetError, DatasetNotFoundError

#: The published 43 -> 19 mapping by class index, as torchgeo's BigEarthNet.label_converter
#: states it (torchgeo/datasets/bigearthnet.py): an independent check of NOMENCLATURE_19.
PUBLISHED_43_TO_19 = {
    0: 0, 1: 0, 2: 1, 11: 2, 12: 2, 13: 2, 14: 3, 15: 3, 16: 3, 18: 3, 17: 4, 19: 5, 20: 6,
    21: 7, 22: 8, 23: 9, 24: 10, 25: 11, 31: 11, 26: 12, 27: 12, 28: 13, 29: 14, 33: 15, 34: 15,
    35: 16, 36: 16, 38: 17, 39: 17, 40: 18, 41: 18, 42: 18,
}  # fmt: skip
SNOW, CLOUD = "patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv"


@pytest.fixture(scope="module")
def v1_root(tmp_path_factory) -> Path:
    """BigEarthNet v1: 48 patches (5 in the snow list, 2 in the cloud list), 10 m bands 12 px."""
    return synthesize("bigearthnet", tmp_path_factory.mktemp("ben1") / "archive", n=48, size=12, seed=14, version="v1")


@pytest.fixture
def v1_copy(v1_root, tmp_path) -> Path:
    return Path(shutil.copytree(v1_root, tmp_path / "archive"))


def _json(root: Path, name: str) -> dict:
    return json.loads((root / "BigEarthNet-v1.0" / name / f"{name}_labels_metadata.json").read_text())


def _list(path: Path) -> list[str]:
    return path.read_text().split()


def _published_split(root: Path) -> dict[str, str]:
    return {name: split for split in ("train", "val", "test") for name in _list(root / f"{split}.csv")}


def _all_patches(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "BigEarthNet-v1.0").iterdir())


# -- labels --------------------------------------------------------------------------


def test_mapping_is_the_published_one():
    assert len(CLASSES_43) == 43 and len(set(CLASSES_43)) == 43
    assert tuple(NOMENCLATURE_19) == BigEarthNetReader.classes
    ours = {CLASSES_43.index(old): i for i, olds in enumerate(NOMENCLATURE_19.values()) for old in olds}
    assert ours == PUBLISHED_43_TO_19
    unmapped = {CLASSES_43[c] for c in range(43)} - {CLASSES_43[c] for c in PUBLISHED_43_TO_19}
    assert unmapped == {
        "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
        "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities", "Bare rock",
        "Burnt areas", "Intertidal flats",
    }  # fmt: skip


def test_43_classes_as_published(v1_root):
    reader = get_reader("bigearthnet", v1_root, nomenclature=43)
    index = reader.index()
    dropped = set(_list(v1_root / SNOW)) | set(_list(v1_root / CLOUD))
    assert reader.layout == "v1" and index.classes == list(CLASSES_43)
    assert dropped and set(index.ids) == set(_all_patches(v1_root)) - dropped
    split_of = _published_split(v1_root)
    for id_, path, target, split in zip(index.ids, index.paths, index.labels, index.splits):
        assert [index.classes[c] for c in np.flatnonzero(target)] == _json(v1_root, id_)["labels"]
        assert path == str(v1_root / "BigEarthNet-v1.0" / id_)
        # a patch in none of the published lists (here: without a 19-class label) is train
        assert split == split_of.get(id_, "train")
    assert reader.settings() == {"reflectance_max": 4000, "version": "v1", "nomenclature": 43, "drop_snow_cloud": True}


def test_19_classes_by_the_published_mapping(v1_root):
    index = get_reader("bigearthnet", v1_root).index()  # nomenclature 19 is the default
    assert index.classes == list(BigEarthNetReader.classes)
    assert len(index) == sum(len(_list(v1_root / f"{s}.csv")) for s in ("train", "val", "test"))
    split_of = _published_split(v1_root)
    for id_, target, split in zip(index.ids, index.labels, index.splits):
        olds = [CLASSES_43.index(n) for n in _json(v1_root, id_)["labels"]]
        expected = {PUBLISHED_43_TO_19[c] for c in olds if c in PUBLISHED_43_TO_19}
        assert set(np.flatnonzero(target)) == expected and split == split_of[id_]


def test_patches_without_a_19_class_label_are_left_out_and_counted(v1_copy, caplog):
    kept = _list(v1_copy / "train.csv")[:2]
    for name in kept:
        path = v1_copy / "BigEarthNet-v1.0" / name / f"{name}_labels_metadata.json"
        path.write_text(json.dumps(_json(v1_copy, name) | {"labels": ["Airports", "Bare rock"]}))
    with caplog.at_level(logging.WARNING, logger="raydal.data.bigearthnet"):
        reader = get_reader("bigearthnet", v1_copy)
        index = reader.index()
    assert not set(kept) & set(index.ids)
    assert sorted(reader.left_out["no label in the 19-class nomenclature"]) == sorted(kept)
    assert reader.left_out[SNOW] == sorted(_list(v1_copy / SNOW))
    message = caplog.records[-1].getMessage()
    assert "2 patches with no label in the 19-class nomenclature" in message
    assert f"{len(_list(v1_copy / SNOW))} patches listed in {SNOW}" in message
    with_43 = get_reader("bigearthnet", v1_copy, nomenclature=43).index()
    row = with_43.ids.index(kept[0])
    assert [with_43.classes[c] for c in np.flatnonzero(with_43.labels[row])] == ["Airports", "Bare rock"]


def test_snow_and_cloud_lists_are_a_setting(v1_root):
    snow, cloud = _list(v1_root / SNOW), _list(v1_root / CLOUD)
    default = get_reader("bigearthnet", v1_root, nomenclature=43)
    assert not set(default.index().ids) & set(snow + cloud)
    assert (len(default.left_out[SNOW]), len(default.left_out[CLOUD])) == (len(snow), len(cloud))
    keep = get_reader("bigearthnet", v1_root, nomenclature=43, drop_snow_cloud=False)
    index = keep.index()
    assert set(index.ids) == set(_all_patches(v1_root)) and keep.left_out == {}
    assert {index.splits[index.ids.index(n)] for n in snow + cloud} == {"train"}  # listed in no split


def test_without_split_lists_there_is_no_published_split(v1_copy, tmp_path):
    for split in ("train", "val", "test"):
        (v1_copy / f"{split}.csv").unlink()
    index = get_reader("bigearthnet", v1_copy).index()
    assert set(index.splits) == {""}
    manifest = prepare("bigearthnet", v1_copy, tmp_path / "out", size=12)
    assert manifest.split_rule.startswith("random")


def test_patch_folders_in_root_itself_are_read(v1_root):
    inner = get_reader("bigearthnet", v1_root / "BigEarthNet-v1.0", drop_snow_cloud=False, nomenclature=43)
    assert inner.layout == "v1" and len(inner.index()) == len(_all_patches(v1_root))


# -- bad input -------------------------------------------------------------------------


def test_bad_labels_and_lists_name_the_file(v1_copy, tmp_path):
    names = _list(v1_copy / "train.csv")
    base = v1_copy / "BigEarthNet-v1.0"
    (base / names[0] / f"{names[0]}_labels_metadata.json").write_text('{"labels": ["Pastures",')
    (base / names[1] / f"{names[1]}_labels_metadata.json").unlink()
    (base / names[2] / f"{names[2]}_labels_metadata.json").write_text('{"labels": ["Rainforest"]}')
    (base / names[3] / f"{names[3]}_labels_metadata.json").write_text('{"label": []}')
    with (v1_copy / "test.csv").open("a") as f:
        f.write(f"{names[4]}\nS2A_MSIL2A_20170613T101031_99_99\n")
    with pytest.raises(DatasetError) as info:
        get_reader("bigearthnet", v1_copy).index()
    problems = dict(info.value.problems)
    assert "is not valid JSON" in problems[str(base / names[0] / f"{names[0]}_labels_metadata.json")]
    assert problems[str(base / names[1])] == f"image without labels: no {names[1]}_labels_metadata.json"
    assert "unknown class ['Rainforest']" in problems[str(base / names[2] / f"{names[2]}_labels_metadata.json")]
    assert "has no 'labels' list" in problems[str(base / names[3] / f"{names[3]}_labels_metadata.json")]
    listed = [why for where, why in problems.items() if where.startswith(str(v1_copy / "test.csv"))]
    assert any(f"{names[4]} is listed twice (also at {v1_copy / 'train.csv'}:line 5)" in w for w in listed)
    assert any("listed patch without image: no folder" in w for w in listed)
    assert len(problems) == 6
    assert str(base / names[0]) in str(info.value)  # the message names the file too
    manifest = prepare("bigearthnet", v1_copy, tmp_path / "out", size=12, skip_bad=True)
    quarantine = (tmp_path / "out" / "quarantine.csv").read_text()
    assert f"{names[0]}_labels_metadata.json" in quarantine and manifest.quarantined == 6
    assert manifest.splits["pool"]["count"] == len(names) - 5  # names[0..4] left out


def test_a_folder_of_neither_layout_names_both(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        get_reader("bigearthnet", tmp_path)
    text = str(info.value)
    for looked_for in (
        "BigEarthNet-S2",
        "metadata.parquet",
        "BigEarthNet-v1.0",
        "_labels_metadata.json",
        "raydal synth bigearthnet",
    ):
        assert looked_for in text
    assert main(["prepare", "bigearthnet", str(tmp_path), str(tmp_path / "out")]) == 2


def test_a_forced_version_looks_only_for_its_layout(v1_root, tmp_path_factory):
    v2_root = synthesize("bigearthnet", tmp_path_factory.mktemp("ben2") / "archive", n=4, size=12, seed=1)
    with pytest.raises(DatasetNotFoundError, match="No BigEarthNet v1 archive found.*BigEarthNet-v1.0"):
        get_reader("bigearthnet", v2_root, version="v1")
    with pytest.raises(DatasetNotFoundError, match="BigEarthNet-S2"):
        get_reader("bigearthnet", v1_root, version="v2")
    with pytest.raises(ConfigError, match="'nomenclature'.*v2"):
        get_reader("bigearthnet", v2_root, nomenclature=43)
    assert get_reader("bigearthnet", v2_root).settings() == {"reflectance_max": 4000}  # v2 as before


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"version": "v3"}, "'version'"),
        ({"nomenclature": 20}, "'nomenclature'"),
        ({"nomenclature": True}, "'nomenclature'"),
        ({"drop_snow_cloud": "yes"}, "'drop_snow_cloud'"),
    ],
)
def test_bad_settings(v1_root, settings, match):
    with pytest.raises(ConfigError, match=match):
        BigEarthNetReader(v1_root, **settings)


# -- shards ------------------------------------------------------------------------------


def test_prepare_packs_a_v1_archive(v1_root, tmp_path):
    manifest = prepare("bigearthnet", v1_root, tmp_path / "out", size=12)
    assert manifest.classes == list(BigEarthNetReader.classes) and manifest.bands == 12
    assert manifest.split_rule.startswith("published")
    counts = {s: manifest.splits[s]["count"] for s in ("pool", "val", "test")}
    assert counts == {
        s: len(_list(v1_root / f"{f}.csv")) for s, f in (("pool", "train"), ("val", "val"), ("test", "test"))
    }
    test = read_split(manifest, "test")
    assert test["image"].shape == (counts["test"], 12, 12, 12) and test["image"].dtype == np.uint8
    reader = get_reader(manifest.dataset, manifest.source_root, **manifest.reader_settings)  # as thumbnails do
    row = list(test["id"]).index(sorted(test["id"])[0])
    np.testing.assert_array_equal(reader.load_image(v1_root / "BigEarthNet-v1.0" / test["id"][row]), test["image"][row])


def test_cli_prepare_v1_with_43_classes(v1_root, tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(
            [
                "prepare",
                "bigearthnet",
                str(v1_root),
                str(out),
                "--size",
                "12",
                "--nomenclature",
                "43",
                "--keep-snow-cloud",
                "--bigearthnet-version",
                "v1",
            ]
        )
        == 0
    )
    manifest = load_manifest(out)
    assert manifest.classes == list(CLASSES_43)
    assert manifest.reader_settings == {
        "reflectance_max": 4000,
        "version": "v1",
        "nomenclature": 43,
        "drop_snow_cloud": False,
    }
    assert sum(s["count"] for s in manifest.splits.values()) == len(_all_patches(v1_root))


# -- generator ---------------------------------------------------------------------------


def test_v1_generator_profiles_and_metadata(v1_root):
    name = _all_patches(v1_root)[0]
    folder = v1_root / "BigEarthNet-v1.0" / name
    metadata = _json(v1_root, name)
    assert set(metadata) == {"labels", "coordinates", "projection", "tile_source", "acquisition_date"}
    assert metadata["labels"] and set(metadata["labels"]) <= set(CLASSES_43)
    crs = rasterio.crs.CRS.from_wkt(metadata["projection"])
    sizes = {}
    for band in BigEarthNetReader.band_names:
        with rasterio.open(folder / f"{name}_{band}.tif") as src:
            assert (src.count, src.dtypes[0], src.crs) == (1, "uint16", crs)
            assert (src.transform.c, src.transform.f) == (
                metadata["coordinates"]["ulx"],
                metadata["coordinates"]["uly"],
            )
            sizes[band] = (src.width, src.transform.a)
    assert sizes["B02"] == (12, 10.0) and sizes["B8A"] == (6, 20.0) and sizes["B09"] == (2, 60.0)
    assert len(list(folder.iterdir())) == 13
    assert crs.to_epsg() in (32629, 32632, 32633, 32634, 32635)
    assert metadata["tile_source"].split("_")[5][1:3] == str(crs.to_epsg())[-2:]  # T<zone>...: the tile's UTM zone


def test_v1_generator_is_deterministic(tmp_path):
    a = synthesize("bigearthnet", tmp_path / "a", n=6, size=12, seed=2, version="v1")
    b = synthesize("bigearthnet", tmp_path / "b", n=6, size=12, seed=2, version="v1")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 6 * 13 + 5 and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    with pytest.raises(ConfigError, match="'version'"):
        synthesize("bigearthnet", tmp_path / "c", n=2, size=12, version="v3")


def test_a_v1_archive_runs(v1_root, tmp_path):
    from raydal.al.executor import LocalExecutor
    from raydal.al.loop import ActiveLearner
    from raydal.config import ALConfig

    shards = prepare("bigearthnet", v1_root, tmp_path / "shards", size=12, nomenclature=43)
    cfg = ALConfig(
        dataset="bigearthnet", shards_dir=str(shards.root), state_dir=str(tmp_path / "state"), mode="simulation",
        strategy="mge+clustering", b=4, m=2, initial_labeled=8, iterations=1, seed=0, backbone="smallcnn",
        executor="local", score_batch_size=32, train={"epochs": 1, "batch_size": 8, "lr": 0.05},
    )  # fmt: skip
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    assert [h["n_labeled"] for h in state.history] == [8, 12]
    assert state.history[-1]["test"]["n_samples"] == shards.splits["test"]["count"]
