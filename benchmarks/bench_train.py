"""Training under Ray Train vs in process, and against pool size (same labeled set).

Builds a small prepared archive (UCMerced layout, tiny images), then a copy whose
pool holds ``--big-pool`` rows (the small pool's images repeated under new ids,
written as 512-row shards like ``raydal prepare``), and times in one run:

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


def _timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from raydal.distributed.session import ensure_ray
    import torch

    from raydal.data.shards import load_manifest, read_ids, read_split
    from raydal.distributed.train import train_with_ray
    from raydal.models import ModelSpec
    from raydal.training import TrainConfig, train_in_process

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-train-"))
    small, big = make_shards(workdir, args.n, args.size, args.big_pool)
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
        rows.append(dict(path="train_in_process", pool=manifest.splits["pool"]["count"], epochs=epochs,
                         seconds=seconds, epoch_seconds=[round(h["seconds"], 3) for h in res.history]))

    def on_ray(shards: Path, epochs: int, tag: str) -> None:
        pool = load_manifest(shards).splits["pool"]["count"]
        out = workdir / f"ray-{tag}-{epochs}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, res = _timed(lambda: train_with_ray(
            spec, cfg(epochs), shards, labeled, out, num_workers=args.workers, cpus_per_worker=args.cpus,
            validate=False, torch_threads=args.threads, run_name=f"bench-{tag}"))
        rows.append(dict(path=f"train_with_ray x{args.workers}", pool=pool, epochs=epochs, seconds=seconds,
                         epoch_seconds=[round(h["seconds"], 3) for h in res.history],
                         fit_loop_seconds=res.metrics.get("fit_seconds")))

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
    ray_rows = [r for r in rows if r["path"].startswith("train_with_ray") and r["pool"] == n_small
                and r["epochs"] == args.e2]
    in_rows = [r for r in rows if r["path"] == "train_in_process" and r["epochs"] == args.e2]
    in_epoch = sum(in_rows[0]["epoch_seconds"]) / args.e2
    loop = ray_rows[0]["fit_loop_seconds"] or sum(ray_rows[0]["epoch_seconds"])
    summary["per_epoch_overhead_in_fit_s"] = loop / args.e2 - in_epoch
    print(f"fit time pool {n_big} / pool {n_small}: {summary['pool_ratio']:.3f} (target <= 1.1)")
    print(f"per-fit overhead of train_with_ray: {summary['per_fit_overhead_s']:.1f} s")
    print(f"per-epoch overhead of train_with_ray: {summary['per_epoch_overhead_s']:.3f} s between fits, "
          f"{summary['per_epoch_overhead_in_fit_s']:.3f} s inside one fit (target <= 0.3)")
    return dict(
        machine=platform.node(), cpus=os.cpu_count(), load=os.getloadavg()[0], date=time.strftime("%Y-%m-%d %H:%M"),
        args=vars(args), labeled=len(labeled), rows=rows, summary=summary,
    )


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
    p.add_argument("--small", action="store_true", help="smoke size")
    args = p.parse_args(argv)
    if args.small:
        args.n, args.big_pool, args.labeled, args.e1, args.e2 = 160, 400, 24, 1, 2
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
