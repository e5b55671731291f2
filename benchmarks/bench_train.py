"""Training reads and training time: bytes read per fit with spread labels; Ray Train vs in process.

Part 1, reads (no Ray; ``--reads-only`` runs just this part): a pool of
``--read-pool`` random images of ``--read-size`` px (3 bands) written in two
layouts, "old" (one 512-row row group per file, as ``raydal prepare`` wrote
before issue 15) and "new" (``prepare``'s row groups of about one image), and
``--read-labeled`` labeled ids drawn at random, so they are spread over every
file as an AL selection's are. Each case runs in a fresh process and reports
the bytes its reads pulled through ``read()`` (``/proc/self/io`` rchar, page
cache included), seconds, and ``read_share``'s peak memory (numpy via
tracemalloc plus Arrow's memory pool) against the share's bytes:

  before     the ``--baseline-ref`` commit's ``locate_ids`` + ``read_share`` (old layout)
  after      this tree's, new layout
  after-old  this tree's on the old layout (old shard sets keep working)

and the read-ahead: the new layout's rows streamed by ``iter_range_batches``
with a stand-in compute per batch (a sleep as long as one batch's read and
decode: it releases the GIL as a forward pass does), without and with
read-ahead.

Part 2, fits: a small prepared archive (UCMerced layout, tiny images), then a
copy whose pool holds ``--big-pool`` rows (the small pool's images repeated
under new ids, 512-row files), timed in one run:

  in-process E1 / E2   ``train_in_process`` on the labeled rows, E1 and E2 epochs
  ray small E1 / E2    ``train_with_ray`` on the same ids, pool of ~1,000 rows
  ray big E2           ``train_with_ray`` on the same ids, pool of ``--big-pool`` rows

and reports:
  fit-vs-pool ratio    ray big E2 / ray small E2 (target <= 1.1)
  per-fit overhead     ray small E1 - in-process E1 (worker-group start/stop, data, reports)
  per-epoch overhead   (ray E2 - ray E1) / (E2 - E1) - (in-process E2 - in-process E1) / (E2 - E1)

Only the public API is used (``train_with_ray``'s signature is stable), so the
same script times an older checkout: ``PYTHONPATH=<old tree> python benchmarks/bench_train.py``.

    python benchmarks/bench_train.py [--workers 1] [--e1 2 --e2 8] [--big-pool 20000] [--json out.json]
    python benchmarks/bench_train.py --reads-only [--read-pool 6144 --read-size 128 --read-labeled 300]
    python benchmarks/bench_train.py --small          # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def make_shards(workdir: Path, n: int, size: int, big_pool: int) -> tuple[Path, Path]:
    """(small shards, big shards): the big copy repeats the small pool's rows under new ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydal.data.shards import SCHEMA, prepare
    from raydal.data.synth import synthesize

    small = workdir / "shards-small"
    if not (small / "manifest.json").exists():
        synthesize("ucmerced", workdir / "archive", n=n, size=size, seed=0)
        prepare("ucmerced", workdir / "archive", small, size=size, seed=0, shard_size=512)
    big = workdir / "shards-big"
    if not (big / "manifest.json").exists():
        if big.exists():
            shutil.rmtree(big)
        shutil.copytree(small, big)
        data = json.loads((small / "manifest.json").read_text())
        pool = pa.concat_tables([pq.read_table(small / f) for f in data["splits"]["pool"]["files"]])
        for f in data["splits"]["pool"]["files"]:
            (big / f).unlink()
        files, written, rep = [], 0, 0
        chunks = []
        while written < big_pool:
            take = min(pool.num_rows, big_pool - written)
            part = pool.slice(0, take)
            ids = part["id"].to_pylist() if rep == 0 else [f"{i}~{rep}" for i in part["id"].to_pylist()]
            chunks.append(part.set_column(0, "id", pa.array(ids, pa.string())))
            written += take
            rep += 1
        table = pa.concat_tables(chunks).cast(SCHEMA)
        for start in range(0, table.num_rows, 512):
            name = f"pool/part-{len(files):05d}.parquet"
            pq.write_table(table.slice(start, 512), big / name)
            files.append(name)
        data["splits"]["pool"] = {"count": table.num_rows, "files": files}
        (big / "manifest.json").write_text(json.dumps(data, indent=1))
    return small, big


# -- part 1: bytes read per fit ----------------------------------------------------

#: Run in a fresh process per case (with PYTHONPATH at the code under test): locate the
#: labeled ids and read the share, as a fit does; prints one JSON line.
_READ_CASE = r"""
import json, sys, time, tracemalloc
import pyarrow as pa
from raydal.data.shards import load_manifest
from raydal.training.shares import locate_ids, plan_labeled_shares, read_share

def rchar():
    return int(next(l for l in open("/proc/self/io") if l.startswith("rchar")).split()[1])

shards, ids_file = sys.argv[1], sys.argv[2]
manifest = load_manifest(shards)
ids = json.load(open(ids_file))
# warm-up: load the Arrow kernels and readers both versions use, so rchar counts shard bytes only
import pyarrow.compute as pc, pyarrow.parquet as pq
pc.is_in(pa.array(["a"]), value_set=pa.array(["a"])).to_numpy(zero_copy_only=False)
pq.ParquetFile(manifest.split_files("val")[0]).read(columns=["id"], use_threads=False)
warm = pq.read_table(manifest.split_files("test")[0], columns=["id"])
warm.filter(pc.is_in(warm["id"], value_set=pa.array(["a"])))
r0, t0 = rchar(), time.perf_counter()
located = locate_ids(manifest, "pool", ids)
r1, t1 = rchar(), time.perf_counter()
share = plan_labeled_shares(located, 1)[0]
out = read_share(manifest, share)
r2, t2 = rchar(), time.perf_counter()
n = len(out["id"])
share_bytes = out["image"].nbytes + out["labels"].nbytes + out["id"].nbytes
del out
arrow = pa.proxy_memory_pool(pa.default_memory_pool())
pa.set_memory_pool(arrow)
tracemalloc.start()
read_share(manifest, share)
numpy_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps(dict(rows=n, locate_bytes=r1 - r0, locate_s=t1 - t0, read_bytes=r2 - r1, read_s=t2 - t1,
                      share_bytes=share_bytes, peak_bytes=numpy_peak + arrow.max_memory(),
                      files=len(manifest.split_files("pool")), files_holding=len(located))))
"""


def make_read_shards(workdir: Path, template: Path, n: int, size: int) -> dict[str, Path]:
    """The same random pool of ``n`` images in the old and the new row-group layout."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydal.data import shards as shard_module

    row_group_bytes = getattr(shard_module, "ROW_GROUP_BYTES", 1 << 16)  # (an older tree: prepare's rule today)
    data = json.loads((template / "manifest.json").read_text())
    bands, classes = data["bands"], len(data["classes"])
    out = {}
    for layout, per_group in (("old", 512), ("new", max(1, row_group_bytes // (size * size * bands)))):
        root = workdir / f"reads-{layout}-{n}-{size}"
        out[layout] = root
        if (root / "manifest.json").exists():
            continue
        shutil.rmtree(root, ignore_errors=True)
        rng = np.random.default_rng(0)
        files = []
        (root / "pool").mkdir(parents=True)
        for start in range(0, n, 512):
            k = min(512, n - start)
            table = pa.table(
                {
                    "id": [
                        f"S2A_MSIL2A_20170613T101031_{i:07d}_{i % 97:02d}_{i % 89:02d}" for i in range(start, start + k)
                    ],
                    "image": [rng.integers(0, 256, size * size * bands, dtype=np.uint8).tobytes() for _ in range(k)],
                    "labels": [rng.integers(0, 2, classes, dtype=np.uint8).tobytes() for _ in range(k)],
                    "path": [f"img/{i}.tif" for i in range(start, start + k)],
                    "labeled": [True] * k,
                },
                schema=shard_module.SCHEMA,
            )
            name = f"pool/part-{len(files):05d}.parquet"
            pq.write_table(table, root / name, row_group_size=per_group, write_statistics=["id"])  # as prepare
            files.append(name)
        for split in ("val", "test"):
            shutil.copytree(template / split, root / split)
        kept = {k: {"count": v["count"], "files": v["files"]} for k, v in data["splits"].items()}  # no id index
        data.update(image_size=size, splits=dict(kept, pool={"count": n, "files": files}))
        (root / "manifest.json").write_text(json.dumps(data))
    return out


def baseline_tree(workdir: Path, ref: str) -> Path:
    """The ``raydal`` package of commit ``ref`` (``git archive``; the repository is not touched)."""
    import subprocess

    tree = workdir / f"baseline-{ref}"
    if not (tree / "raydal").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        repo = Path(__file__).resolve().parents[1]
        archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "raydal"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _read_case(shards: Path, ids_file: Path, code_root: Path) -> dict[str, Any]:
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(code_root))
    out = subprocess.run(
        [sys.executable, "-c", _READ_CASE, str(shards), str(ids_file)],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(code_root),
    )
    if out.returncode:
        raise RuntimeError(f"read case failed on {shards} with {code_root}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_ahead_overlap(shards: Path, batch_size: int) -> dict[str, float]:
    """Rows/s of streaming the pool with a stand-in compute per batch, without and with read-ahead."""
    from raydal.data.shards import load_manifest
    from raydal.training.shares import file_rows, iter_range_batches, row_ranges

    manifest = load_manifest(shards)
    ranges = row_ranges(file_rows(manifest, "pool"), 0, 1)
    t0 = time.perf_counter()
    n = sum(len(b["id"]) for b in iter_range_batches(manifest, ranges, batch_size, read_ahead=0))
    per_batch = (time.perf_counter() - t0) / -(-n // batch_size)
    out = {"read_only_rows_s": n / (time.perf_counter() - t0), "compute_s_per_batch": per_batch}
    runs: dict[int, list[float]] = {0: [], 2: []}
    for depth in (0, 2) * 3:  # alternated; the median counts (the box is shared)
        t0 = time.perf_counter()
        for _ in iter_range_batches(manifest, ranges, batch_size, read_ahead=depth):
            time.sleep(per_batch)  # the model's forward pass: releases the GIL
        runs[depth].append(n / (time.perf_counter() - t0))
    for depth, rates in runs.items():
        out[f"read_ahead_{depth}_rows_s"] = sorted(rates)[1]
    out["speedup"] = out["read_ahead_2_rows_s"] / out["read_ahead_0_rows_s"]
    return out


def scan_cpu_us_per_row(shards: Path, batch_size: int) -> float:
    """CPU microseconds per row (all threads) of one whole pass over the pool (scoring's read), no read-ahead.

    CPU time, not wall time: on a shared box the wall time of a pass swings 3x with the load.
    """
    from raydal.data.shards import load_manifest
    from raydal.training.shares import file_rows, iter_range_batches, row_ranges

    manifest = load_manifest(shards)
    c0 = time.process_time()
    n = sum(
        len(b["id"])
        for b in iter_range_batches(manifest, row_ranges(file_rows(manifest, "pool"), 0, 1), batch_size, read_ahead=0)
    )
    return (time.process_time() - c0) / n * 1e6


def run_reads(args: argparse.Namespace, workdir: Path, template: Path) -> dict[str, Any]:
    import numpy as np

    layouts = make_read_shards(workdir, template, args.read_pool, args.read_size)
    ids = [
        f"S2A_MSIL2A_20170613T101031_{i:07d}_{i % 97:02d}_{i % 89:02d}"
        for i in sorted(np.random.default_rng(1).choice(args.read_pool, args.read_labeled, replace=False))
    ]
    ids_file = workdir / "read-ids.json"
    ids_file.write_text(json.dumps(ids))
    here = Path(__file__).resolve().parents[1]
    cases = {"after": (layouts["new"], here), "after-old": (layouts["old"], here)}
    if args.baseline_ref:
        cases = {"before": (layouts["old"], baseline_tree(workdir, args.baseline_ref)), **cases}
    rows = {}
    for name, (shards, code) in cases.items():
        r = _read_case(shards, ids_file, code)
        labeled_bytes = r["rows"] * (r["share_bytes"] // max(1, r["rows"]))
        r.update(
            case=name,
            layout=shards.name.split("-")[1],
            code=str(code),
            read_ratio=r["read_bytes"] / labeled_bytes,
            peak_ratio=r["peak_bytes"] / r["share_bytes"],
        )
        rows[name] = r
        print(
            f"{name:<10} {r['layout']} layout: {r['files_holding']}/{r['files']} files hold a labeled row | "
            f"read {r['read_bytes'] / 1e6:8.1f} MB = {r['read_ratio']:6.2f}x the labeled rows "
            f"({labeled_bytes / 1e6:.1f} MB) in {r['read_s']:.2f} s | locate {r['locate_bytes'] / 1e6:.1f} MB "
            f"in {r['locate_s']:.2f} s | peak {r['peak_ratio']:.2f}x the share"
        )
    passes: dict[str, list[float]] = {"old": [], "new": []}
    for layout in ("old", "new") * 5:  # alternated, from the page cache; the median counts
        passes[layout].append(scan_cpu_us_per_row(layouts[layout], args.batch_size * 4))
    scan = {layout: sorted(v)[len(v) // 2] for layout, v in passes.items()}
    print(
        f"whole-pool pass (scoring's read), no read-ahead: old layout {scan['old']:.0f} CPU us/row, "
        f"new layout {scan['new']:.0f} CPU us/row (medians of 5)"
    )
    overlap = read_ahead_overlap(layouts["new"], args.batch_size * 4)
    print(
        f"read-ahead: {overlap['read_ahead_0_rows_s']:.0f} rows/s without, {overlap['read_ahead_2_rows_s']:.0f} "
        f"with ({overlap['speedup']:.2f}x; compute {overlap['compute_s_per_batch'] * 1e3:.1f} ms per batch, "
        f"the read's own time)"
    )
    return dict(
        cases=rows,
        scan_cpu_us_per_row=scan,
        read_ahead=overlap,
        labeled=len(ids),
        pool=args.read_pool,
        size=args.read_size,
    )


# -- part 2: fits ------------------------------------------------------------------


def _timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-train-"))
    small, big = make_shards(workdir, args.n, args.size, args.big_pool)
    info = dict(
        machine=platform.node(),
        cpus=os.cpu_count(),
        load=os.getloadavg()[0],
        date=time.strftime("%Y-%m-%d %H:%M"),
        args=vars(args),
    )
    reads = run_reads(args, workdir, small)
    if args.reads_only:
        return dict(info, reads=reads)

    import ray
    import torch

    from raydal.data.shards import load_manifest, read_ids, read_split
    from raydal.distributed.session import ensure_ray
    from raydal.distributed.train import train_with_ray
    from raydal.models import ModelSpec
    from raydal.training import TrainConfig, train_in_process

    manifest = load_manifest(small)
    labeled = sorted(read_ids(manifest, "pool").tolist())[: args.labeled]
    spec = ModelSpec(args.model, num_classes=manifest.num_classes, in_channels=manifest.bands)

    def cfg(epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=0.05, seed=0)

    if not ray.is_initialized():
        ensure_ray()  # as the jobs start it (dashboard on, every CPU)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []

    def in_process(epochs: int) -> None:
        def go():
            data = read_split(manifest, "pool", ids=labeled)  # reading is part of a fit
            return train_in_process(spec, cfg(epochs), data, out_dir=workdir / f"inproc-{epochs}")

        seconds, res = _timed(go)
        rows.append(
            dict(
                path="train_in_process",
                pool=manifest.splits["pool"]["count"],
                epochs=epochs,
                seconds=seconds,
                epoch_seconds=[round(h["seconds"], 3) for h in res.history],
            )
        )

    def on_ray(shards: Path, epochs: int, tag: str) -> None:
        pool = load_manifest(shards).splits["pool"]["count"]
        out = workdir / f"ray-{tag}-{epochs}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, res = _timed(
            lambda: train_with_ray(
                spec,
                cfg(epochs),
                shards,
                labeled,
                out,
                num_workers=args.workers,
                cpus_per_worker=args.cpus,
                validate=False,
                torch_threads=args.threads,
                run_name=f"bench-{tag}",
            )
        )
        rows.append(
            dict(
                path=f"train_with_ray x{args.workers}",
                pool=pool,
                epochs=epochs,
                seconds=seconds,
                epoch_seconds=[round(h["seconds"], 3) for h in res.history],
                fit_loop_seconds=res.metrics.get("fit_seconds"),
            )
        )

    in_process(args.e1)
    in_process(args.e2)
    on_ray(small, args.e1, "small")
    on_ray(small, args.e2, "small")
    on_ray(big, args.e2, "big")
    for r in rows:
        print(f"{r['path']:<22} pool {r['pool']:>6} epochs {r['epochs']:>3}: {r['seconds']:7.2f} s")

    t = {(r["path"].split()[0], r["pool"], r["epochs"]): r["seconds"] for r in rows}
    n_small, n_big = manifest.splits["pool"]["count"], load_manifest(big).splits["pool"]["count"]
    d = args.e2 - args.e1
    ray_e1, ray_e2 = t[("train_with_ray", n_small, args.e1)], t[("train_with_ray", n_small, args.e2)]
    in_e1, in_e2 = t[("train_in_process", n_small, args.e1)], t[("train_in_process", n_small, args.e2)]
    summary = dict(
        pool_ratio=t[("train_with_ray", n_big, args.e2)] / ray_e2,
        per_fit_overhead_s=ray_e1 - in_e1,
        per_epoch_overhead_s=(ray_e2 - ray_e1) / d - (in_e2 - in_e1) / d,
    )
    # Inside one fit, free of start-up noise: the worker's training-loop wall time per epoch
    # (compute, data, reports, checkpoints) against the in-process epoch. Older code does not
    # return the loop's wall time: there the mean epoch time (data + compute) is a lower bound.
    ray_rows = [
        r for r in rows if r["path"].startswith("train_with_ray") and r["pool"] == n_small and r["epochs"] == args.e2
    ]
    in_rows = [r for r in rows if r["path"] == "train_in_process" and r["epochs"] == args.e2]
    in_epoch = sum(in_rows[0]["epoch_seconds"]) / args.e2
    loop = ray_rows[0]["fit_loop_seconds"] or sum(ray_rows[0]["epoch_seconds"])
    summary["per_epoch_overhead_in_fit_s"] = loop / args.e2 - in_epoch
    print(f"fit time pool {n_big} / pool {n_small}: {summary['pool_ratio']:.3f} (target <= 1.1)")
    print(f"per-fit overhead of train_with_ray: {summary['per_fit_overhead_s']:.1f} s")
    print(
        f"per-epoch overhead of train_with_ray: {summary['per_epoch_overhead_s']:.3f} s between fits, "
        f"{summary['per_epoch_overhead_in_fit_s']:.3f} s inside one fit (target <= 0.3)"
    )
    return dict(info, labeled=len(labeled), rows=rows, summary=summary, reads=reads)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="images in the small archive (half go to the pool)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--big-pool", type=int, default=20000)
    p.add_argument("--labeled", type=int, default=200)
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cpus", type=float, default=0.5, help="CPUs per Ray Train worker")
    p.add_argument("--threads", type=int, default=1, help="torch threads, both paths")
    p.add_argument("--e1", type=int, default=2)
    p.add_argument("--e2", type=int, default=8)
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--reads-only", action="store_true", help="part 1 only: bytes read per fit, no Ray")
    p.add_argument("--read-pool", type=int, default=6144, help="pool rows of the reads part")
    p.add_argument("--read-size", type=int, default=128, help="image side of the reads part (3 bands)")
    p.add_argument("--read-labeled", type=int, default=300, help="labeled ids of the reads part, spread at random")
    p.add_argument(
        "--baseline-ref", default="0a0936a", help="commit whose reader the reads part runs as 'before' ('' to skip)"
    )
    p.add_argument("--small", action="store_true", help="smoke size")
    args = p.parse_args(argv)
    if args.small:
        args.n, args.big_pool, args.labeled, args.e1, args.e2 = 160, 400, 24, 1, 2
        args.read_pool, args.read_size, args.read_labeled, args.baseline_ref = 1024, 32, 40, ""
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
