"""Reads proportional to need: row groups fetched, bytes, peak memory, read-ahead, evaluation subsample."""

import json
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import raydal.training.shares as shares
from raydal.data.shards import ROW_GROUP_BYTES, SCHEMA, iter_batches, load_manifest, read_ids, read_split
from raydal.exceptions import DatasetError
from raydal.training.shares import (
    evaluation_rows,
    file_rows,
    iter_row_tables,
    iter_share_batches,
    locate_ids,
    plan_labeled_shares,
    prefetch,
    read_share,
    row_nbytes,
    split_share,
    subsample_rows,
)


def write_shards(template, out, n: int, size: int, rows_per_group: int, seed: int = 0, per_file: int = 64):
    """A shard set like ``template``'s with a pool of ``n`` random ``size`` x ``size`` images."""
    data = json.loads((template / "manifest.json").read_text())
    classes, bands = len(data["classes"]), data["bands"]
    rng = np.random.default_rng(seed)
    (out / "pool").mkdir(parents=True)
    files = []
    for start in range(0, n, per_file):
        k = min(per_file, n - start)
        table = pa.table(
            {
                "id": [f"img-{i:05d}" for i in range(start, start + k)],
                "image": [rng.integers(0, 255, size * size * bands, dtype=np.uint8).tobytes() for _ in range(k)],
                "labels": [rng.integers(0, 2, classes, dtype=np.uint8).tobytes() for _ in range(k)],
                "path": [f"x/{i}.tif" for i in range(start, start + k)],
                "labeled": [True] * k,
            },
            schema=SCHEMA,
        )
        name = f"pool/part-{len(files):05d}.parquet"
        pq.write_table(table, out / name, row_group_size=rows_per_group, write_statistics=["id"])
        files.append(name)
    for split in ("val", "test"):  # kept from the template
        (out / split).mkdir()
        for f in data["splits"][split]["files"]:
            (out / f).write_bytes((template / f).read_bytes())
    kept = {k: {"count": v["count"], "files": v["files"]} for k, v in data["splits"].items()}  # no id index
    data.update(image_size=size, splits=dict(kept, pool={"count": n, "files": files}))
    (out / "manifest.json").write_text(json.dumps(data))
    return load_manifest(out)


class Recorder:
    """Wraps ``shares.open_shard``: which row groups of which file were read, and their bytes."""

    def __init__(self, monkeypatch):
        self.groups: dict[str, list[int]] = {}
        self.bytes = 0
        opened = shares.open_shard

        def open_shard(path):
            pf = opened(path)
            read = pf.read_row_groups

            def read_row_groups(groups, columns=None, **kw):
                self.groups.setdefault(str(path), []).extend(groups)
                names = [pf.metadata.schema.column(i).name for i in range(pf.metadata.num_columns)]
                for g in groups:
                    rg = pf.metadata.row_group(g)
                    self.bytes += sum(
                        rg.column(i).total_compressed_size
                        for i, name in enumerate(names)
                        if columns is None or name in columns
                    )
                return read(groups, columns=columns, **kw)

            pf.read_row_groups = read_row_groups
            return pf

        monkeypatch.setattr(shares, "open_shard", open_shard)


def test_prepare_writes_row_groups_of_about_one_image(manifest):
    row = int(np.prod(manifest.image_shape))
    for path in manifest.split_files("pool"):
        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert meta.num_row_groups > 1 and max(sizes) == max(1, ROW_GROUP_BYTES // row)


@pytest.mark.parametrize("size, per_group, stride", [(150, 1, 7), (32, 21, 50)])
def test_a_spread_labeled_set_reads_only_its_row_groups(tiny_shards, tmp_path, monkeypatch, size, per_group, stride):
    """Labeled rows in every file: a fit reads those rows' groups, not the files holding them."""
    m = write_shards(tiny_shards, tmp_path / "s", n=320, size=size, rows_per_group=per_group)
    pool = read_ids(m, "pool").tolist()
    labeled = pool[::stride]
    located = locate_ids(m, "pool", labeled)
    assert len(located) == len(m.split_files("pool"))  # the ids are spread over every file
    rec = Recorder(monkeypatch)
    got = read_share(m, plan_labeled_shares(located, 1)[0])
    assert got["id"].tolist() == labeled
    ref = read_split(m, "pool", ids=labeled)
    np.testing.assert_array_equal(got["image"], ref["image"])
    np.testing.assert_array_equal(got["labels"], ref["labels"])
    for path, rows in located:  # exactly the groups holding a labeled row
        assert sorted(rec.groups[path]) == sorted({r // per_group for r in rows})
    labeled_bytes = len(labeled) * row_nbytes(m)
    whole_files = len(pool) * row_nbytes(m)
    if per_group == 1:  # one image per group (real image sizes): about the labeled rows' bytes
        assert rec.bytes <= 1.2 * labeled_bytes
    else:
        assert rec.bytes < 0.5 * whole_files  # 7 of 20 groups


def test_old_shard_sets_with_one_row_group_per_file_still_read(tiny_shards, tmp_path):
    m = write_shards(tiny_shards, tmp_path / "old", n=200, size=32, rows_per_group=10**6)
    ids = read_ids(m, "pool").tolist()[3::5]
    got = read_share(m, plan_labeled_shares(locate_ids(m, "pool", ids), 1)[0])
    np.testing.assert_array_equal(got["image"], read_split(m, "pool", ids=ids)["image"])


def test_read_share_peak_memory_within_one_and_a_half_shares(tiny_shards, tmp_path):
    """numpy (tracemalloc) plus Arrow (its own memory pool) at their peaks, against the share's bytes."""
    m = write_shards(tiny_shards, tmp_path / "s", n=1280, size=64, rows_per_group=ROW_GROUP_BYTES // (64 * 64 * 3))
    share = plan_labeled_shares(locate_ids(m, "pool", read_ids(m, "pool").tolist()[::2]), 1)[0]
    arrow = pa.proxy_memory_pool(pa.default_memory_pool())
    old = pa.default_memory_pool()
    pa.set_memory_pool(arrow)
    tracemalloc.start()
    try:
        out = read_share(m, share)
        numpy_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(old)
    share_bytes = out["image"].nbytes + out["labels"].nbytes + out["id"].nbytes
    assert arrow.max_memory() > 0  # the pool saw the reads
    assert numpy_peak + arrow.max_memory() <= 1.5 * share_bytes, (numpy_peak, arrow.max_memory(), share_bytes)


def test_read_ahead_gives_the_same_batches_in_the_same_order(manifest):
    rows = subsample_rows(file_rows(manifest, "pool"), None, 0)
    exclude = set(read_ids(manifest, "pool")[::4].tolist())
    plain = list(iter_share_batches(manifest, rows, 7, exclude=exclude, read_ahead=0))
    ahead = list(iter_share_batches(manifest, rows, 7, exclude=exclude, read_ahead=3))
    assert len(plain) == len(ahead) > 2
    for a, b in zip(plain, ahead):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # ... and the same as the whole-split reader
    ref = list(iter_batches(manifest, "pool", 7, exclude=exclude))
    assert [b["id"].tolist() for b in ahead] == [b["id"].tolist() for b in ref]


def test_prefetch_runs_ahead_passes_errors_and_stops_when_closed():
    produced = []
    gate = threading.Event()

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    gate.wait(0.3)
    assert 2 <= len(produced) <= 5  # up to depth items ready, one in the making
    it.close()  # the producer stops instead of reading the rest
    assert len(produced) <= 5 and not any(t.name == "raydal-read-ahead" for t in threading.enumerate())

    def broken():
        yield 1
        raise OSError("disk gone")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(it)


def test_row_chunks_respect_the_byte_bound(tiny_shards, tmp_path):
    m = write_shards(tiny_shards, tmp_path / "s", n=256, size=32, rows_per_group=4)
    share = subsample_rows(file_rows(m, "pool"), None, 0)
    group_bytes = pq.ParquetFile(m.split_files("pool")[0]).metadata.row_group(0).total_byte_size
    tables = list(iter_row_tables(share, max_bytes=3 * group_bytes))
    assert max(t.num_rows for t in tables) <= 12 and sum(t.num_rows for t in tables) == 256


def test_evaluation_subsample_is_fixed_and_recorded(manifest):
    files = file_rows(manifest, "val")
    total = sum(n for _, n in files)
    rows, recorded = evaluation_rows(manifest, "val", 9)
    again, _ = evaluation_rows(manifest, "val", 9)
    assert rows == again and sum(len(r) for _, r in rows) == 9  # the same rows every call
    assert recorded == {"split_rows": total, "subsample_seed": shares.split_seed("val")}
    assert evaluation_rows(manifest, "test", 9)[0] != rows  # another split, its own rows
    whole, recorded = evaluation_rows(manifest, "val", None)
    assert recorded == {} and sum(len(r) for _, r in whole) == total
    parts = split_share(rows, 2)  # the ranks' parts cover the subsample once
    assert [r for p in parts for _, rs in p for r in rs] == [r for _, rs in rows for r in rs]


def test_local_executor_evaluates_the_subsample_every_iteration(tiny_shards, tmp_path):
    from raydal.al.executor import LocalExecutor
    from raydal.config import ALConfig
    from raydal.models import ModelSpec, save_checkpoint
    from raydal.training import evaluate

    m = load_manifest(tiny_shards)
    net = ModelSpec("smallcnn", num_classes=m.num_classes, in_channels=m.bands).build(seed=0)
    checkpoint = str(save_checkpoint(tmp_path / "ckpt", net))
    cfg = dict(
        dataset="ucmerced",
        shards_dir=str(tiny_shards),
        state_dir=str(tmp_path / "run"),
        backbone="smallcnn",
        executor="local",
    )
    sub = LocalExecutor(ALConfig(**cfg, eval_max_samples=9))
    first, second = sub.evaluate(checkpoint, "val"), sub.evaluate(checkpoint, "val")
    assert first["n_samples"] == 9 and first == second
    assert first["split_rows"] == m.splits["val"]["count"]
    rows, _ = evaluation_rows(m, "val", 9)
    ref = evaluate(net.eval(), [read_share(m, rows)])
    assert first["micro_f1"] == ref["micro_f1"] and first["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    full = LocalExecutor(ALConfig(**cfg)).evaluate(checkpoint, "val")
    assert full["n_samples"] == m.splits["val"]["count"] and "split_rows" not in full


def test_the_ray_launcher_module_imports_no_torch():
    code = "import sys, raydal.distributed.train; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_driver_reads_a_splits_ids_once_and_workers_check_them(tiny_shards, tmp_path, monkeypatch):
    m = write_shards(tiny_shards, tmp_path / "s", n=200, size=32, rows_per_group=21)
    ids = read_ids(m, "pool").tolist()[::9]
    first = locate_ids(m, "pool", ids)
    opened = []
    real = shares.open_shard
    monkeypatch.setattr(shares, "open_shard", lambda path: opened.append(path) or real(path))
    assert locate_ids(m, "pool", ids) == first and file_rows(m, "pool") and opened == []  # from memory
    share = plan_labeled_shares(first, 1)[0]
    assert read_share(m, share, expected=ids)["id"].tolist() == ids
    with pytest.raises(DatasetError, match="changed since the run located its rows"):
        read_share(m, share, expected=ids[1:])  # a row whose id the plan did not name


@pytest.mark.parametrize("per_group, statistics", [(1, ["id"]), (1, False), (3, ["id"])])
def test_file_ids_from_the_footer_or_the_column(tmp_path, per_group, statistics):
    ids = [f"S2A_MSIL2A_{i:07d}" for i in range(40)]
    pq.write_table(
        pa.table({"id": ids, "image": [bytes(64)] * 40}),
        tmp_path / "f.parquet",
        row_group_size=per_group,
        write_statistics=statistics,
    )
    assert shares.file_ids(pq.ParquetFile(tmp_path / "f.parquet")).to_pylist() == ids
