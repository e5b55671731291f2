"""The folder reader: your own GeoTIFFs / PNGs with a partial labels CSV, and hostile archives."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from raydal.cli import main
from raydal.data import get_reader
from raydal.data.shards import load_manifest, prepare, read_ids, read_split
from raydal.data.synth import synthesize
from raydal.data.synth._tiff import write_tif
from raydal.exceptions import ConfigError, DatasetError, DatasetNotFoundError


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    """40 float32 4-band GeoTIFFs of 24 px in 3 sub-folders; half of labels.csv filled."""
    return synthesize("folder", tmp_path_factory.mktemp("folder") / "archive", n=40, size=24, seed=5)


def _csv_rows(root):
    with open(root / "labels.csv") as f:
        return list(csv.DictReader(f))


def _write_labels(path, rows, header=("id", "labels")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_prepare_keeps_unlabeled_images_in_the_pool(folder_root, tmp_path):
    m = prepare(
        "folder",
        folder_root,
        tmp_path / "shards",
        labels=folder_root / "labels.csv",
        classes=folder_root / "classes.txt",
    )
    rows = _csv_rows(folder_root)
    labeled = {r["id"] for r in rows if r["labels"]}
    unlabeled = {r["id"] for r in rows if not r["labels"]}
    assert unlabeled and labeled
    assert set(read_ids(m, "pool", labeled=False)) == unlabeled
    held_out = set(read_ids(m, "val")) | set(read_ids(m, "test"))
    assert held_out <= labeled and len(read_ids(m, "test")) == round(0.25 * len(labeled))
    assert set(read_ids(m, "pool", labeled=True)) == labeled - held_out
    assert m.unlabeled == {"pool": len(unlabeled), "val": 0, "test": 0}
    assert m.band_names == ["R", "G", "B", "NIR"] and m.bands == 4 and m.image_size == 24
    # unlabeled rows: all-zero labels and labeled=False in the shard; labeled rows match the CSV
    table = pq.read_table(m.split_files("pool")[0])
    by_id = {r["id"]: r["labels"].split(";") if r["labels"] else [] for r in rows}
    for sid, lab, flag in zip(table["id"].to_pylist(), table["labels"].to_pylist(), table["labeled"].to_pylist()):
        names = [m.classes[c] for c in np.flatnonzero(np.frombuffer(lab, np.uint8))]
        assert sorted(names) == sorted(by_id[sid]) and flag == bool(by_id[sid])
    assert "images without labels -> pool" in m.split_rule
    assert m.reader_settings["labels"] == str(folder_root / "labels.csv")


def test_percentile_rule_is_computed_over_the_archive_and_recorded(folder_root, tmp_path):
    m = prepare("folder", folder_root, tmp_path / "shards", labels=folder_root / "labels.csv", percentiles=(5, 95))
    reader = get_reader("folder", folder_root)
    pixels = np.concatenate([reader.load_raw(p).reshape(-1, 4) for p in reader.files]).astype(np.float64)
    lo, hi = np.percentile(pixels, [5, 95], axis=0)
    assert m.scaling["method"] == "percentile" and m.scaling["source_dtype"] == "float32"
    np.testing.assert_allclose(m.scaling["lo"], lo, rtol=1e-6)
    np.testing.assert_allclose(m.scaling["hi"], hi, rtol=1e-6)
    assert m.scaling["images_used"] == 40
    # the manifest's settings rebuild the reader with the same conversion, without recomputing it
    again = get_reader("folder", folder_root, **m.reader_settings)
    path = reader.files[0]
    np.testing.assert_array_equal(
        again.load_image(path), np.rint(np.clip((again.load_raw(path) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    )
    assert again.settings() == m.reader_settings
    # a packed image is the formula applied to its file
    data = read_split(m, "pool", ids=["patch_0000"]) if "patch_0000" in read_ids(m, "pool") else None
    sid = "patch_0000" if data is not None else str(read_ids(m, "pool")[0])
    data = read_split(m, "pool", ids=[sid])
    raw = reader.load_raw(next(p for p in reader.files if p.stem == sid))
    expected = np.rint(np.clip((raw - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(data["image"][0], expected)  # 24 px: no resize


def test_fixed_range_rule(tmp_path):
    root = tmp_path / "a"
    write_tif(root / "x.tif", np.array([[[0, 1000], [2000, 4000]], [[5000, 3000], [1, 2]]], np.uint16))
    write_tif(root / "y.tif", np.full((2, 2, 2), 4000, np.uint16))
    reader = get_reader("folder", root, classes=["a"], scaling="range", value_range=[0, 4000])
    reader.scan()
    reader.fit_conversion([])
    image = reader.load_image(root / "x.tif")
    np.testing.assert_array_equal(image[..., 0], [[0, 128], [255, 0]])  # 2000/4000*255 = 127.5 -> 128
    np.testing.assert_array_equal(image[..., 1], [[64, 255], [191, 0]])
    assert reader.scaling()["lo"] == [0.0, 0.0] and reader.scaling()["hi"] == [4000.0, 4000.0]
    # per-band ranges
    reader = get_reader("folder", root, classes=["a"], scaling="range", value_range=[[0, 4000], [0, 2000]])
    reader.scan()
    assert reader.load_image(root / "x.tif")[0, 1, 1] == 255
    with pytest.raises(ConfigError, match="value_range"):
        get_reader("folder", root, classes=["a"], scaling="range", value_range=[10, 5])


def test_uint16_archive_with_scaling_none_is_refused(tmp_path):
    root = tmp_path / "a"
    write_tif(root / "x.tif", np.zeros((8, 8, 2), np.uint16))
    with pytest.raises(ConfigError, match="--scaling percentile"):
        prepare("folder", root, tmp_path / "out", classes=["a"], scaling="none")


def test_png_and_jpeg_archive_without_labels(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA").save(root / "sub" / "b.png")
    Image.fromarray(rng.integers(0, 255, (22, 20, 3), dtype=np.uint8)).save(root / "sub" / "c.jpg")
    (root / "classes.txt").write_text("# my classes\nfield\n\nwater\n")
    m = prepare("folder", root, tmp_path / "out", classes=root / "classes.txt", size=16)
    assert m.classes == ["field", "water"] and m.band_names == ["R", "G", "B"]
    assert m.scaling["method"] == "none" and m.unlabeled["pool"] == 3
    assert m.splits["val"]["count"] == m.splits["test"]["count"] == 0
    assert sorted(read_ids(m, "pool", labeled=False)) == ["a", "b", "c"]
    image = read_split(m, "pool", ids=["a"])["image"][0]
    assert image.shape == (16, 16, 3)


def test_split_column_and_classes_from_labels(folder_root, tmp_path, copy_archive):
    root = copy_archive(folder_root)
    rows = _csv_rows(root)
    labeled = [r for r in rows if r["labels"]]
    out = [[r["id"], r["labels"], "test" if k < 3 else ""] for k, r in enumerate(labeled)]
    out += [[r["id"], "", ""] for r in rows if not r["labels"]][:5]  # the other unlabeled have no row at all
    _write_labels(root / "labels.csv", out, header=("id", "labels", "split"))
    m = prepare("folder", root, tmp_path / "out", labels=root / "labels.csv", val_share=0.2)
    assert set(read_ids(m, "test")) == {r["id"] for r in labeled[:3]}
    assert len(read_ids(m, "val")) == round(0.2 * (len(labeled) - 3))
    assert m.classes == sorted({n for r in labeled for n in r["labels"].split(";")})
    assert m.unlabeled["pool"] == 40 - len(labeled)


def test_label_rows_by_relative_path(folder_root, tmp_path, copy_archive):
    root = copy_archive(folder_root)
    files = sorted(root.glob("images/*/*.tif"))
    _write_labels(
        root / "labels.csv",
        [
            [files[0].relative_to(root).as_posix(), "water"],
            [files[1].relative_to(root).with_suffix("").as_posix(), "forest;water"],
        ],
        header=("path", "labels"),
    )
    index, problems = get_reader("folder", root, labels=root / "labels.csv").scan()
    assert not problems
    labeled = dict(zip(index.ids, index.labeled))
    assert labeled[files[0].stem] and labeled[files[1].stem] and sum(labeled.values()) == 2
    assert index.classes == ["forest", "water"]


def test_bad_label_rows_are_listed_together(folder_root, tmp_path, copy_archive):
    root = copy_archive(folder_root)
    rows = _csv_rows(root)
    labeled = [r for r in rows if r["labels"]]
    _write_labels(
        root / "labels.csv",
        [
            [labeled[0]["id"], "water;lava"],  # unknown class
            ["no_such_patch", "water"],  # row without image
            [labeled[1]["id"], labeled[1]["labels"]],
            [labeled[1]["id"], "forest"],  # duplicate row
            [labeled[2]["id"], "", "test"],  # held out without labels
            [labeled[3]["id"], "water", "holdout"],  # bad split value
        ],
        header=("id", "labels", "split"),
    )
    with pytest.raises(DatasetError) as info:
        prepare("folder", root, tmp_path / "out", labels=root / "labels.csv", classes=root / "classes.txt")
    reasons = " | ".join(f"{w}: {r}" for w, r in info.value.problems)
    for needle in (
        "labels.csv:2: unknown class ['lava']",
        "labels.csv:3: label row without image",
        "labels.csv:5: duplicate row",
        "labels.csv:6: split 'test' but no labels",
        "labels.csv:7: split 'holdout'",
    ):
        assert needle in reasons, (needle, reasons)
    assert "--skip-bad" in str(info.value) and not (tmp_path / "out").exists()
    m = prepare(
        "folder", root, tmp_path / "out", labels=root / "labels.csv", classes=root / "classes.txt", skip_bad=True
    )
    # an image whose row is bad is left out, never silently unlabeled
    assert m.quarantined == 5 and sum(v["count"] for v in m.splits.values()) == 36
    kept = {i for split in m.splits for i in read_ids(m, split)}
    assert not kept & {labeled[k]["id"] for k in range(4)}


def test_labels_csv_without_the_columns(folder_root, copy_archive):
    root = copy_archive(folder_root)
    (root / "labels.csv").write_text("image;classes\na;b\n")
    with pytest.raises(DatasetError, match="'id' \\(or 'path'\\) and 'labels'"):
        get_reader("folder", root, labels=root / "labels.csv").scan()


# -- hostile archives (issue 11) ------------------------------------------------------


def test_nan_pixels_name_the_file_and_the_fix(folder_root, tmp_path, copy_archive):
    root = copy_archive(folder_root)
    victim = sorted(root.glob("images/north/*.tif"))[0]
    image = np.full((24, 24, 4), 0.1, np.float32)
    image[3, 4, 1], image[5, 5, 2] = np.nan, np.inf
    write_tif(victim, image)
    with pytest.raises(DatasetError) as info:
        prepare("folder", root, tmp_path / "out", labels=root / "labels.csv")
    assert info.value.problems == [(str(victim), info.value.problems[0][1])]
    assert "2 NaN/inf pixels" in info.value.problems[0][1] and "--nan-fill" in info.value.problems[0][1]
    m = prepare("folder", root, tmp_path / "out", labels=root / "labels.csv", nan_fill=0.0)
    assert m.scaling["nan_fill"] == 0.0 and sum(s["count"] for s in m.splits.values()) == 40


def test_duplicate_ids_across_folders(folder_root, tmp_path, copy_archive):
    root = copy_archive(folder_root)
    first = sorted(root.glob("images/north/*.tif"))[0]
    twin = root / "images" / "south" / first.name
    twin.write_bytes(first.read_bytes())
    with pytest.raises(DatasetError) as info:
        prepare("folder", root, tmp_path / "out", labels=root / "labels.csv")
    ((where, why),) = info.value.problems
    assert where == str(twin) and f"duplicate image id {first.stem!r}" in why and str(first) in why
    assert "--id-from path" in why
    index, problems = get_reader("folder", root, id_from="path", classes=["water"]).scan()
    assert not problems and f"images/south/{first.stem}" in index.ids and f"images/north/{first.stem}" in index.ids


def test_empty_archive(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match="is empty: no image files.*raydal synth folder"):
        prepare("folder", tmp_path / "empty", tmp_path / "out", classes=["a"])


def test_no_readable_image(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.tif").write_bytes(b"not a tiff")
    (tmp_path / "junk" / "b.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="None of the 2 image files") as info:
        prepare("folder", tmp_path / "junk", tmp_path / "out", classes=["a"])
    assert sorted(w for w, _ in info.value.problems) == [str(tmp_path / "junk" / n) for n in ("a.tif", "b.png")]


def test_no_class_names(folder_root, tmp_path):
    with pytest.raises(ConfigError, match="--classes classes.txt"):
        prepare("folder", folder_root, tmp_path / "out")


def test_mixed_band_counts_dtypes_and_sizes(tmp_path):
    root = tmp_path / "mixed"
    for k, h in enumerate((16, 18, 20, 28)):  # up to 1.25:1 is resized; 28x16 is not
        write_tif(root / f"ok{k}.tif", np.full((h, 16, 3), 10 * k, np.uint8))
    write_tif(root / "four.tif", np.zeros((16, 16, 4), np.uint8))
    write_tif(root / "wide.tif", np.zeros((16, 40, 3), np.uint8))
    write_tif(root / "deep.tif", np.zeros((16, 16, 3), np.uint16))
    with pytest.raises(DatasetError) as info:
        prepare("folder", root, tmp_path / "out", classes=["a"], size=16)
    problems = dict(info.value.problems)
    assert set(problems) == {str(root / n) for n in ("four.tif", "wide.tif", "deep.tif", "ok3.tif")}
    assert "has 4 bands, but most images of the archive have 3" in problems[str(root / "four.tif")]
    assert "has dtype uint16, but most images of the archive are uint8" in problems[str(root / "deep.tif")]
    assert "too far from square" in problems[str(root / "wide.tif")]
    assert "too far from square" in problems[str(root / "ok3.tif")]  # 28x16
    m = prepare("folder", root, tmp_path / "out", classes=["a"], size=16, skip_bad=True)
    assert m.splits["pool"]["count"] == 3  # 16x16, 18x16, 20x16 resized to 16x16
    assert read_split(m, "pool")["image"].shape == (3, 16, 16, 3)


def test_corrupt_file(folder_root, tmp_path, copy_archive):
    root = copy_archive(folder_root)
    victim = sorted(root.glob("images/east/*.tif"))[0]
    victim.write_bytes(b"not a tiff")
    with pytest.raises(DatasetError) as info:
        prepare("folder", root, tmp_path / "out", labels=root / "labels.csv")
    assert [w for w, _ in info.value.problems] == [str(victim)]
    assert "cannot be read as a TIFF" in info.value.problems[0][1]


# -- command line ---------------------------------------------------------------------


def test_cli_synth_and_prepare_folder(tmp_path, capsys):
    archive, shards = tmp_path / "arch", tmp_path / "shards"
    assert (
        main(
            [
                "synth",
                "folder",
                str(archive),
                "--n",
                "12",
                "--size",
                "16",
                "--dtype",
                "uint16",
                "--labeled-share",
                "0.25",
            ]
        )
        == 0
    )
    rows = _csv_rows(archive)
    assert len(rows) == 12 and sum(bool(r["labels"]) for r in rows) == 3
    assert (
        main(
            [
                "prepare",
                "folder",
                str(archive),
                str(shards),
                "--labels",
                str(archive / "labels.csv"),
                "--classes",
                str(archive / "classes.txt"),
                "--scaling",
                "range",
                "--value-range",
                "0,4000",
                "--test-share",
                "0.34",
                "--val-share",
                "0",
                "--band-names",
                "r,g,b,n",
            ]
        )
        == 0
    )
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["scaling"]["lo"] == [0.0] * 4 and manifest["scaling"]["hi"] == [4000.0] * 4
    assert manifest["band_names"] == ["r", "g", "b", "n"]
    assert manifest["splits"]["test"]["count"] == 1 and manifest["splits"]["val"]["count"] == 0
    assert manifest["unlabeled"]["pool"] == 9
    assert main(["prepare", "folder", str(archive), str(tmp_path / "bad"), "--percentiles", "2,x"]) == 2
    assert "The 'percentiles' parameter of FolderReader must be (low, high)" in capsys.readouterr().err


def test_synth_folder_is_deterministic(tmp_path):
    a = synthesize("folder", tmp_path / "a", n=6, size=12, seed=1, dtype="uint16")
    b = synthesize("folder", tmp_path / "b", n=6, size=12, seed=1, dtype="uint16")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8 and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_cli_reflectance_max_reaches_bigearthnet(ben_root, tmp_path):
    assert (
        main(
            ["prepare", "bigearthnet", str(ben_root), str(tmp_path / "s"), "--size", "12", "--reflectance-max", "2000"]
        )
        == 0
    )
    m = load_manifest(tmp_path / "s")
    assert m.reader_settings == {"reflectance_max": 2000} and m.scaling["clip"] == [0, 2000]
