"""prepare -> manifest -> decoded batches, on fake archives of every dataset."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raydal.constants import SHARD_FORMAT_VERSION, SPLITS
from raydal.data import get_reader
from raydal.data.shards import (
    SCHEMA,
    decode_batch,
    iter_batches,
    load_manifest,
    prepare,
    read_ids,
    read_split,
    resize,
)
from raydal.exceptions import ConfigError, DatasetError, DatasetNotFoundError


@pytest.fixture(scope="module")
def ucm_shards(ucm_root, tmp_path_factory):
    return prepare("ucmerced", ucm_root, tmp_path_factory.mktemp("ucm_shards") / "out", size=16, seed=0, shard_size=8)


def _all(manifest) -> dict[str, dict[str, np.ndarray]]:
    return {split: read_split(manifest, split) for split in SPLITS}


def test_manifest_describes_the_shards(ucm_shards, ucm_root):
    m = load_manifest(ucm_shards.root)
    assert m == ucm_shards
    data = json.loads((m.root / "manifest.json").read_text())
    assert data["format_version"] == SHARD_FORMAT_VERSION
    assert (m.dataset, m.image_size, m.bands, m.band_names) == ("ucmerced", 16, 3, ["R", "G", "B"])
    assert m.source_root == str(ucm_root.resolve()) and m.seed == 0
    assert m.scaling == {"method": "none", "source_dtype": "uint8"}
    assert {s: m.splits[s]["count"] for s in SPLITS} == {"pool": 30, "val": 15, "test": 15}  # 50/25/25
    for split in SPLITS:
        files = m.split_files(split)
        assert files and all(f.startswith(str(m.root)) and f.endswith(".parquet") for f in files)
        assert all(not f.startswith("/") for f in m.splits[split]["files"])  # stored relative
        assert pq.read_schema(files[0]).remove_metadata() == SCHEMA
    with pytest.raises(ConfigError, match="'split'"):
        m.split_files("train")


def test_splits_are_disjoint_and_round_trip_the_reader(ucm_shards, ucm_root):
    reader = get_reader("ucmerced", ucm_root)
    index = reader.index()
    data = _all(ucm_shards)
    ids = [set(d["id"]) for d in data.values()]
    assert sum(len(s) for s in ids) == len(set.union(*ids)) == len(index)
    position = {i: k for k, i in enumerate(index.ids)}
    for split, d in data.items():
        assert d["image"].shape == (ucm_shards.splits[split]["count"], 16, 16, 3) and d["image"].dtype == np.uint8
        assert d["labels"].shape == (len(d["id"]), 17) and d["labels"].dtype == np.uint8
        rows = [position[i] for i in d["id"]]
        np.testing.assert_array_equal(d["labels"], index.labels[rows])
        counts = dict(zip(ucm_shards.classes, d["labels"].sum(0).tolist()))
        assert ucm_shards.label_counts[split] == counts
    first = data["pool"]["id"][0]
    expected = resize(reader.load_image(index.paths[position[first]]), 16)
    np.testing.assert_array_equal(data["pool"]["image"][0], expected)


def test_the_split_is_seeded(ucm_root, tmp_path):
    a = prepare("ucmerced", ucm_root, tmp_path / "a", size=8, seed=5)
    b = prepare("ucmerced", ucm_root, tmp_path / "b", size=8, seed=5)
    c = prepare("ucmerced", ucm_root, tmp_path / "c", size=8, seed=6)
    assert list(read_ids(a, "val")) == list(read_ids(b, "val"))
    assert set(read_ids(a, "val")) != set(read_ids(c, "val"))


def test_treesatai_test_split_is_the_published_one(treesat_root, tmp_path):
    m = prepare("treesatai", treesat_root, tmp_path / "out", size=16, threshold=0.07, band_order="nir-rgb")
    test = {n[:-4] for n in (treesat_root / "test_filenames.lst").read_text().split()}
    assert set(read_ids(m, "test")) == test
    assert m.splits["val"]["count"] == round(54 * 6799 / (6799 + 38531))
    assert m.splits["pool"]["count"] == 54 - m.splits["val"]["count"]
    assert m.reader_settings == {"threshold": 0.07, "band_order": ["NIR", "R", "G", "B"]}
    assert read_split(m, "val")["image"].shape[1:] == (16, 16, 4)


def test_bigearthnet_uses_the_metadata_split(ben_root, tmp_path):
    m = prepare("bigearthnet", ben_root, tmp_path / "out")
    index = get_reader("bigearthnet", ben_root).index()
    expected = {"pool": "train", "val": "val", "test": "test"}
    for split in SPLITS:
        assert set(read_ids(m, split)) == {i for i, s in zip(index.ids, index.splits) if s == expected[split]}
    assert m.image_size == 120 and m.bands == 12  # default size: resampled up from the 24 px fakes
    assert m.scaling["formula"] == "uint8 = round(clip(dn, 0, 4000) * 255 / 4000)"


def test_decode_batch_on_a_ray_style_numpy_batch(ucm_shards):
    table = pq.read_table(ucm_shards.split_files("val")[0])
    ray_like = {name: np.array(table[name].to_pylist(), dtype=object) for name in table.column_names}
    decoded = decode_batch(ray_like, ucm_shards)
    from_arrow = decode_batch(table, ucm_shards)
    from_lists = decode_batch(table.to_pydict(), ucm_shards)
    for other in (from_arrow, from_lists):
        for key in ("id", "image", "labels"):
            np.testing.assert_array_equal(decoded[key], other[key])
    assert decoded["image"].shape == (table.num_rows, 16, 16, 3)
    assert list(decoded["id"]) == table["id"].to_pylist()


def test_decode_batch_rejects_a_wrong_shape(ucm_shards):
    table = pq.read_table(ucm_shards.split_files("val")[0]).to_pydict()
    table["image"][1] = table["image"][1][:-3]
    with pytest.raises(DatasetError, match="prepare the shards again") as info:
        decode_batch(table, ucm_shards)
    assert info.value.problems[0][0] == table["id"][1]


def test_iter_batches_filters_and_keeps_order(ucm_shards):
    pool = read_split(ucm_shards, "pool")
    batches = list(iter_batches(ucm_shards, "pool", 7))
    assert [len(b["id"]) for b in batches] == [7, 7, 7, 7, 2]
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in batches]), pool["id"])
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), pool["image"])
    drop = set(pool["id"][::3])
    kept = np.concatenate([b["id"] for b in iter_batches(ucm_shards, "pool", 4, exclude=drop)])
    assert list(kept) == [i for i in pool["id"] if i not in drop]
    wanted = list(pool["id"][5:9])[::-1]
    only = np.concatenate([b["id"] for b in iter_batches(ucm_shards, "pool", 100, ids=wanted + ["not-there"])])
    assert list(only) == list(pool["id"][5:9])  # shard order, not the order asked
    with pytest.raises(ConfigError, match="'batch_size'"):
        next(iter_batches(ucm_shards, "pool", 0))


def test_read_split_by_ids(ucm_shards):
    pool = read_split(ucm_shards, "pool")
    wanted = [pool["id"][3], pool["id"][0]]
    some = read_split(ucm_shards, "pool", ids=wanted)
    assert list(some["id"]) == wanted  # in the order asked
    np.testing.assert_array_equal(some["labels"], pool["labels"][[3, 0]])
    with pytest.raises(DatasetError, match="not in the 'pool' split") as info:
        read_split(ucm_shards, "pool", ids=[wanted[0], "agricultural99"])
    assert info.value.problems == [("agricultural99", "not in split 'pool'")]
    assert list(read_ids(ucm_shards, "pool")) == list(pool["id"])


def test_load_manifest_missing_or_incomplete(ucm_shards, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="raydal prepare"):
        load_manifest(tmp_path)
    import shutil

    broken = shutil.copytree(ucm_shards.root, tmp_path / "broken")
    (broken / ucm_shards.splits["test"]["files"][0]).unlink()
    with pytest.raises(DatasetNotFoundError, match="incomplete"):
        load_manifest(broken)


def test_existing_out_dir_is_refused_unless_overwrite(ucm_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="overwrite=True"):
        prepare("ucmerced", ucm_root, out, size=8)
    assert (out / "notes.txt").read_text() == "mine"
    m = prepare("ucmerced", ucm_root, out, size=8, overwrite=True)
    assert not (out / "notes.txt").exists() and load_manifest(out) == m
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or old folder left


@pytest.mark.parametrize(("name", "value"), [("size", 0), ("shard_size", 0), ("workers", -1)])
def test_bad_prepare_arguments(ucm_root, tmp_path, name, value):
    with pytest.raises(ConfigError, match=f"'{name}'"):
        prepare("ucmerced", ucm_root, tmp_path / "out", **{name: value})


def test_read_ids_reads_footers_and_skips_the_labeled_column_when_all_are_labeled(ucm_shards, monkeypatch):
    """read_ids gives the ids in shard order; with every row labeled (the manifest says so) it
    never reads the 'labeled' column, and asking for the unlabeled ones reads nothing."""
    m = ucm_shards
    expected = np.concatenate(
        [pq.read_table(f, columns=["id"])["id"].to_numpy(zero_copy_only=False) for f in m.split_files("pool")]
    ).astype(str)
    assert m.unlabeled.get("pool") == 0
    read_columns = []
    real_read = pq.ParquetFile.read

    def spy(self, columns=None, **kw):
        read_columns.append(tuple(columns or ()))
        return real_read(self, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    assert read_ids(m, "pool").tolist() == expected.tolist()
    assert read_ids(m, "pool", labeled=True).tolist() == expected.tolist()
    assert not any("labeled" in c for c in read_columns)
    read_columns.clear()
    assert read_ids(m, "pool", labeled=False).tolist() == []
    assert read_columns == []


def test_prepare_writes_an_id_index_that_the_driver_reads_instead_of_the_footers(ucm_shards, monkeypatch):
    """ids-<split>.parquet holds every row's id (and labeled flag) in shard order; read_ids and the
    training planner's split_index use it and open no shard file; the manifest counts rows per file."""
    from raydal.training import shares

    m = ucm_shards
    for split in SPLITS:
        from_files = np.concatenate(
            [pq.read_table(f, columns=["id"])["id"].to_numpy(zero_copy_only=False) for f in m.split_files(split)]
        ).astype(str)
        assert m.file_rows(split) == [pq.ParquetFile(f).metadata.num_rows for f in m.split_files(split)]
        assert pq.read_table(m.ids_file(split))["id"].to_pylist() == from_files.tolist()

        def no_shard_file(*args, **kwargs):
            raise AssertionError("a shard file was opened")

        monkeypatch.setattr(shares, "open_shard", no_shard_file)
        monkeypatch.setattr("raydal.data.shards.open_shard", no_shard_file)
        assert read_ids(m, split).tolist() == from_files.tolist()
        ids, starts = shares.split_index(m, split)
        assert (
            ids.to_pylist() == from_files.tolist() and starts.tolist() == np.cumsum([0, *m.file_rows(split)]).tolist()
        )
        monkeypatch.undo()
