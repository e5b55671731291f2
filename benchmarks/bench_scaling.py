"""Scaling on a simulated multi-node Ray cluster, with a STAND-IN model whose compute is a sleep.

What it measures is orchestration: how raydal's Ray paths spread work, pipeline
it and merge the results as workers are added, the part a GPU cluster sees. The
model is ``benchmarks/standin.py``'s ``standin_sleep`` backbone: each forward
pass sleeps ``--ms-per-row`` x rows (the GIL is released, as in a process
waiting on a GPU kernel), so two CPU cores do not cap how many "accelerators"
run at once. With ``--ns-per-value`` the sleep grows with the image instead:
ns x H x W x B per row. Everything else is raydal's real code: shards, Ray
Data's reads, the piece plan, the actors, the top-K merge, Ray Train's worker
group and DDP.

In one run, on a ``ray.cluster_utils.Cluster`` of ``--nodes`` x ``--cpus``
logical CPUs on 127.0.0.1, over a ``--pool``-row pool of ``--image-size`` x
``--image-size`` x ``--bands`` images (random bytes: Parquet cannot compress them):
  scoring   for each path of ``--scoring`` and N in ``--actors`` (1, 2, 4, 8):
              data   ``score_pool_data``: Ray Data, N actors (``score_workers`` = N); each call
                     starts its actor pool and loads the checkpoint, as every AL iteration does
              warm   ``score_pool_ray``: N warm actors (the first, cold call is reported apart)
              train  the training workers (``score_workers`` = 0): ``train_with_ray`` with N
                     workers, one epoch on ``--score-labeled`` rows, then the pool; its scoring seconds
            seconds per call; data only: the stand-in's own log of its forward passes gives the
            seconds before the first pass (the actors' start) and the busy window from the first
            pass to the last, with its rows/s and speedup over N = 1; every call of the data and warm
            paths must keep the same candidates (the train path trains a model per N first).
  training  ``train_with_ray`` on ``--labeled`` rows, global batch ``--batch``, with N = 1, 2, 4
            workers: median epoch time after the first, speedup over N = 1.

    python benchmarks/bench_scaling.py                # 2 nodes x 4 CPUs, 8,192 one-pixel rows, warm actors
    python benchmarks/bench_scaling.py --scoring data,train --image-size 120 --bands 12 \
        --pool 4096 --rows-per-file 256 --ns-per-value 250 --workers ""   # issue 15: BigEarthNet-size rows
    python benchmarks/bench_scaling.py --small        # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import simulated  # noqa: E402
import standin  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _strategy_and_k(args):
    from raydal.query import get_strategy

    strategy = get_strategy("mge+clustering")
    return strategy, strategy.candidate_count(max(1, args.pool // 40), 4)


def bench_scoring(args, shards: Path, ckpt: Path) -> dict[str, Any]:
    """Warm actors (``score_pool_ray``)."""
    from raydal.distributed.score import release_scoring_actors, score_pool_ray

    strategy, k = _strategy_and_k(args)
    exclude = _score_labeled(args)
    run = lambda n: score_pool_ray(ckpt, shards, exclude, strategy, k, concurrency=n, batch_size=args.batch)  # noqa: E731
    t_cold, _ = _timed(lambda: run(max(args.actors)))  # starts the actors every later call reuses
    rows, base, ref = [], None, None
    for n in args.actors:
        t, got = _timed(lambda: run(n))
        ref = got if ref is None else ref
        base = t if base is None else base
        rows.append(dict(_row(args, n, t, base, got, ref)))
    release_scoring_actors()
    return {"cold_first_call_seconds": t_cold, "k": k, "rows": rows}


def bench_scoring_data(args, shards: Path, ckpt: Path) -> dict[str, Any]:
    """Ray Data (``score_pool_data``): each call starts its actor pool, as each AL iteration does."""
    from raydal.distributed.score_data import score_pool_data

    strategy, k = _strategy_and_k(args)
    exclude = _score_labeled(args)
    # The cluster's first Ray Data call also starts its read-task workers: reported apart.
    t_cold, _ = _timed(
        lambda: score_pool_data(ckpt, shards, exclude, strategy, k, workers=max(args.actors), batch_size=args.batch)
    )
    rows, base, ref = [], None, None
    for n in args.actors:
        marks: list[tuple[float, int]] = []
        wall0 = time.time()
        t0 = time.perf_counter()
        got = score_pool_data(
            ckpt,
            shards,
            exclude,
            strategy,
            k,
            workers=n,
            batch_size=args.batch,
            progress=lambda line: marks.append((time.perf_counter() - t0, _rows_in(line))),
        )
        t = time.perf_counter() - t0
        ref = got if ref is None else ref
        base = t if base is None else base
        rows.append(
            dict(
                _row(args, n, t, base, got, ref),
                first_tenth_seconds=next((s for s, r in marks if r and r >= len(got.ids) / 10), None),
                **_busy_window(wall0, wall0 + t),
            )
        )
    first = rows[0].get("busy_rows_per_s")
    for r in rows:
        if first and r.get("busy_rows_per_s"):
            r["busy_speedup"] = r["busy_rows_per_s"] / first
            r["busy_efficiency"] = r["busy_speedup"] / r["workers"]
    return {"cold_first_call_seconds": t_cold, "k": k, "rows": rows}


def _busy_window(start: float, end: float) -> dict[str, Any]:
    """The stand-in's forward passes (``standin.FORWARD_LOG_ENV``) between wall times ``start`` and
    ``end``: seconds until the first pass began (the actors' start: process, imports, checkpoint),
    the window from the first pass's start to the last one's end, rows/s in it, and how many
    processes ran passes. Measured where the work runs, not from the driver's progress lines
    (which arrive in bursts)."""
    folder = os.environ.get(standin.FORWARD_LOG_ENV)
    if not folder:
        return {}
    passes = []
    for f in Path(folder).glob("forward-*.txt"):
        for line in f.read_text().splitlines():
            pid, t0, t1, n = line.split()
            if start <= float(t0) and float(t1) <= end:
                passes.append((int(pid), float(t0), float(t1), int(n)))
    if not passes:
        return {}
    first, last = min(p[1] for p in passes), max(p[2] for p in passes)
    rows = sum(p[3] for p in passes)
    return {
        "start_seconds": first - start,
        "busy_seconds": last - first,
        "busy_rows_per_s": rows / (last - first),
        "forward_processes": len({p[0] for p in passes}),
    }


def bench_scoring_in_training(args, shards: Path, work: Path) -> dict[str, Any]:
    """The training workers (``score_workers`` = 0): scoring seconds of a ``train_with_ray`` run with N workers."""
    from raydal.distributed.train import PoolScoring, train_with_ray
    from raydal.training import ModelSpec, TrainConfig

    strategy, k = _strategy_and_k(args)
    labeled = sorted(_score_labeled(args))
    spec = ModelSpec(standin.NAME, 15, args.bands)
    cfg = TrainConfig(epochs=1, batch_size=max(2 * max(args.actors), 8), augment=False, seed=0)
    rows, base, ref = [], None, None
    for n in args.actors:
        result = train_with_ray(
            spec,
            cfg,
            shards,
            labeled,
            work / f"score-train-{n}",
            num_workers=n,
            cpus_per_worker=max(0.25, min(1.0, (args.nodes * args.cpus - 1) / n)),
            validate=False,
            run_name=f"score-train-{n}",
            eval_batch_size=args.batch,
            score=PoolScoring(strategy.name, k, None, args.batch),
            progress=False,
        )
        t = result.metrics["score_seconds"]
        got = result.pool_scores
        ref = got if ref is None else ref
        base = t if base is None else base
        # each run trains its own model first (N-way DDP): candidates are not comparable across N
        rows.append(
            dict(_row(args, n, t, base, got, ref), same_candidates=None, fit_seconds=result.metrics.get("fit_seconds"))
        )
    return {"k": k, "rows": rows}


def _score_labeled(args) -> set[str]:
    """The labeled rows every scoring path leaves out (the training path trains on them)."""
    return {f"p{i:07d}" for i in range(0, args.pool, max(1, args.pool // args.score_labeled))}


def _row(args, n: int, t: float, base: float, got, ref) -> dict[str, Any]:
    scored = len(got.ids)
    return {
        "workers": n,
        "seconds": t,
        "rows_per_s": scored / t,
        "speedup": base / t,
        "efficiency": base / t / n,
        "ideal_seconds": scored * args.ms_per_row / 1000.0 / n,
        "rows": scored,
        "same_candidates": bool(np.array_equal(got.cand_ids, ref.cand_ids)),
    }


def _rows_in(line: str) -> int | None:
    """n of a progress line "  scored n/N rows ..." (None for the summary line)."""
    import re

    found = re.match(r"\s*scored ([\d,]+)/", line)
    return int(found.group(1).replace(",", "")) if found else None


def write_image_pool(out_dir: Path, n: int, size: int, bands: int, rows_per_file: int, classes: int = 15) -> Path:
    """A prepared shard set whose pool holds ``n`` images of size x size x bands random bytes (seeded),
    ids ``p0000000``, ...; with ``size`` 1 it is ``simulated.write_pool``'s pool."""
    if size == 1:
        return simulated.write_pool(out_dir, n, bands=bands, rows_per_file=rows_per_file, classes=classes)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydal.constants import MANIFEST_NAME
    from raydal.data.shards import SCHEMA, Manifest
    from raydal.utils import atomic_write_json

    rng = np.random.default_rng(0)
    (out_dir / "pool").mkdir(parents=True, exist_ok=True)
    files = []
    for f, start in enumerate(range(0, n, rows_per_file)):
        rows = np.arange(start, min(n, start + rows_per_file))
        pixels = rng.integers(0, 256, (len(rows), size * size * bands), dtype=np.uint8)
        table = pa.table(
            {
                "id": pa.array([f"p{i:07d}" for i in rows], pa.string()),
                "image": simulated._fixed_binary(pixels),
                "labels": simulated._fixed_binary(np.zeros((len(rows), classes), np.uint8)),
                "path": pa.array([""] * len(rows), pa.string()),
                "labeled": pa.array(np.ones(len(rows), bool)),
            },
            schema=SCHEMA,
        )
        name = f"pool/part-{f:05d}.parquet"
        pq.write_table(table, out_dir / name)
        files.append(name)
    manifest = Manifest(
        root=out_dir,
        dataset="standin",
        classes=[f"c{i}" for i in range(classes)],
        band_names=[f"b{i}" for i in range(bands)],
        bands=bands,
        image_size=size,
        splits={"pool": {"count": n, "files": files}},
        label_counts={"pool": {}},
        source_root="(stand-in: random pixels)",
        seed=0,
    )
    atomic_write_json(out_dir / MANIFEST_NAME, manifest.to_json())
    return out_dir


def bench_training(args, shards: Path, work: Path) -> dict[str, Any]:
    from raydal.distributed.train import train_with_ray
    from raydal.training import ModelSpec, TrainConfig

    labeled = [f"p{i:07d}" for i in range(args.labeled)]
    spec = ModelSpec(standin.NAME, 15, args.bands)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, augment=False, seed=0)
    rows, base = [], None
    for n in args.workers:
        t_fit, result = _timed(
            lambda: train_with_ray(
                spec,
                cfg,
                shards,
                labeled,
                work / f"train-{n}",
                num_workers=n,
                cpus_per_worker=1,
                validate=False,
                run_name=f"scaling-{n}",
            )
        )
        epochs = [h["seconds"] for h in result.history]
        epoch = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
        base = epoch if base is None else base
        ideal = args.labeled * args.ms_per_row / 1000.0 / n
        rows.append(
            {
                "workers": n,
                "epoch_seconds": epoch,
                "first_epoch_seconds": epochs[0],
                "fit_seconds": t_fit,
                "speedup": base / epoch,
                "efficiency": base / epoch / n,
                "ideal_epoch_seconds": ideal,
            }
        )
    return {"epochs": args.epochs, "rows": rows}


def run(args) -> dict[str, Any]:
    import ray
    import torch

    from raydal.models import create_model, save_checkpoint

    os.environ[standin.LATENCY_ROW_ENV] = str(args.ms_per_row)
    forward_log = Path(tempfile.mkdtemp(prefix="raydal-standin-forward-"))
    os.environ[standin.FORWARD_LOG_ENV] = str(forward_log)  # inherited by the cluster's processes
    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-scaling-"))
    t_write, shards = _timed(
        lambda: write_image_pool(work / "shards", args.pool, args.image_size, args.bands, args.rows_per_file)
    )
    standin.register()
    ckpt = save_checkpoint(work / "checkpoint", create_model(standin.NAME, 15, args.bands, ll=True, seed=0))
    cluster = simulated.start_cluster(args.nodes, args.cpus, f"/tmp/raydal-scaling-{os.getpid()}")
    pixels = args.image_size * args.image_size * args.bands
    try:
        res: dict[str, Any] = {
            "benchmark": "scaling",
            "stand_in": f"{standin.NAME}: sleeps {args.ms_per_row:g} ms per row per forward "
            f"pass" + (f" ({args.ns_per_value:g} ns x {pixels:,} values)" if args.ns_per_value else ""),
            "cluster": f"{args.nodes} nodes x {args.cpus} logical CPUs (ray.cluster_utils.Cluster on 127.0.0.1)",
            "pool": args.pool,
            "image": [args.image_size, args.image_size, args.bands],
            "pool_bytes": sum(f.stat().st_size for f in (shards / "pool").iterdir()),
            "rows_per_file": args.rows_per_file,
            "write_seconds": t_write,
            "batch": args.batch,
            "labeled": args.labeled,
            "score_labeled": len(_score_labeled(args)),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"ray {ray.__version__}, load avg {os.getloadavg()[0]:.1f}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
        }
        paths = {
            "data": lambda: bench_scoring_data(args, shards, ckpt),
            "warm": lambda: bench_scoring(args, shards, ckpt),
            "train": lambda: bench_scoring_in_training(args, shards, work),
        }
        for path in args.scoring if args.actors else []:
            res[f"scoring_{path}"] = paths[path]()
            print_scoring(res, path)
            if args.json:  # after every path: a later failure keeps what was measured
                Path(args.json).write_text(json.dumps(res, indent=1))
        if args.workers:
            res["training"] = bench_training(args, shards, work)
            print_training(res)
        res["load_avg_end"] = os.getloadavg()[0]
    finally:
        ray.shutdown()
        cluster.shutdown()
    return res


PATH_TITLES = {
    "data": "Ray Data actors (score_pool_data; each call starts its pool)",
    "warm": "warm actors (score_pool_ray)",
    "train": "the training workers (train_with_ray + PoolScoring; scoring seconds only)",
}


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "NO"


def print_scoring(res, path: str):
    s = res[f"scoring_{path}"]
    print(
        f"# scoring on {PATH_TITLES[path]}: {res['pool']} rows of {'x'.join(map(str, res['image']))} "
        f"({res['pool_bytes'] / 2**20:,.0f} MiB), {res['score_labeled']} labeled left out, batch {res['batch']}, "
        f"{res['stand_in']}; {res['cluster']}; {res['machine']}"
    )
    if "cold_first_call_seconds" in s:
        print(f"first (cold) call with {s['rows'][-1]['workers']} actors: {s['cold_first_call_seconds']:.1f} s")
    print(
        f"{'N':>3s} {'seconds':>8s} {'ideal s':>8s} {'rows/s':>8s} {'speedup':>8s} {'/ N':>6s} "
        f"{'start s':>8s} {'busy s':>7s} {'busy r/s':>9s} {'b.spd':>6s} {'/ N':>6s}  same candidates"
    )
    for r in s["rows"]:
        steady = (
            f"{r['start_seconds']:8.1f} {r['busy_seconds']:7.1f} {r['busy_rows_per_s']:9.1f} "
            f"{r.get('busy_speedup', float('nan')):6.2f} {r.get('busy_efficiency', float('nan')):6.2f}"
            if "busy_rows_per_s" in r
            else f"{'-':>8s} {'-':>7s} {'-':>9s} {'-':>6s} {'-':>6s}"
        )
        print(
            f"{r['workers']:3d} {r['seconds']:8.2f} {r['ideal_seconds']:8.2f} {r['rows_per_s']:8.1f} "
            f"{r['speedup']:8.2f} {r['efficiency']:6.2f} {steady}  {_yes(r['same_candidates'])}"
        )


def print_training(res):
    t = res["training"]
    print(
        f"# training {res['labeled']} labeled rows, global batch {res['batch']}, {t['epochs']} epochs, {res['stand_in']}"
    )
    print(f"{'workers':>7s} {'epoch s':>8s} {'ideal s':>8s} {'1st ep s':>8s} {'fit s':>7s} {'speedup':>8s} {'/ N':>6s}")
    for r in t["rows"]:
        print(
            f"{r['workers']:7d} {r['epoch_seconds']:8.2f} {r['ideal_epoch_seconds']:8.2f} {r['first_epoch_seconds']:8.2f} "
            f"{r['fit_seconds']:7.1f} {r['speedup']:8.2f} {r['efficiency']:6.2f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=4, help="logical CPUs per node")
    p.add_argument("--pool", type=int, default=8192)
    p.add_argument("--rows-per-file", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=1, help="image side in pixels (BigEarthNet: 120)")
    p.add_argument("--bands", type=int, default=4, help="bands per pixel (BigEarthNet: 12)")
    p.add_argument("--batch", type=int, default=32, help="scoring batch and global training batch")
    p.add_argument("--ms-per-row", type=float, default=2.0, help="the stand-in's sleep per row of a forward pass")
    p.add_argument(
        "--ns-per-value",
        type=float,
        help="instead: the sleep per row grows with the image, this many ns per pixel-band value",
    )
    p.add_argument("--scoring", default="warm", help="scoring paths, of data, warm, train ('' to skip)")
    p.add_argument("--actors", default="1,2,4,8", help="scoring actor (or worker) counts ('' to skip)")
    p.add_argument("--score-labeled", type=int, default=16, help="pool rows every scoring path leaves out")
    p.add_argument("--workers", default="1,2,4", help="Ray Train worker counts ('' to skip)")
    p.add_argument("--labeled", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workdir")
    p.add_argument("--json")
    small = {"pool": 256, "rows_per_file": 64, "labeled": 64, "epochs": 2, "actors": "1,2", "workers": "1,2", "cpus": 2}
    p.add_argument("--small", action="store_true", help=f"smoke size: {small} unless given")
    args = p.parse_args(argv)
    if args.small:
        for name, value in small.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    if args.ns_per_value:
        args.ms_per_row = args.ns_per_value * args.image_size**2 * args.bands / 1e6
    args.actors = [int(c) for c in str(args.actors).split(",") if c]
    args.workers = [int(c) for c in str(args.workers).split(",") if c]
    args.scoring = [c for c in str(args.scoring).split(",") if c]
    unknown = set(args.scoring) - {"data", "warm", "train"}
    if unknown:
        p.error(f"--scoring: unknown paths {sorted(unknown)}; choose from data, warm, train")
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only cluster
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    main()
