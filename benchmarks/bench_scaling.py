"""Scaling on a simulated multi-node Ray cluster, with a STAND-IN model whose compute is a sleep.

What it measures is orchestration: how raydal's Ray paths spread work, pipeline
it and merge the results as workers are added, the part a GPU cluster sees. The
model is ``benchmarks/standin.py``'s ``standin_sleep`` backbone: each forward
pass sleeps ``--ms-per-row`` x rows (the GIL is released, as in a process
waiting on a GPU kernel), so two CPU cores do not cap how many "accelerators"
run at once. Everything else is raydal's real code: shards, the piece plan,
warm scoring actors, the top-K merge, Ray Train's worker group and DDP.

In one run, on a ``ray.cluster_utils.Cluster`` of ``--nodes`` x ``--cpus``
logical CPUs on 127.0.0.1:
  scoring   ``score_pool_ray`` over a ``--pool``-row pool with N = 1, 2, 4, 8 actors
            (warm actors; the first, cold call is reported apart), rows/s and speedup over N = 1;
            every N must keep the same candidates.
  training  ``train_with_ray`` on ``--labeled`` rows, global batch ``--batch``, with N = 1, 2, 4
            workers: median epoch time after the first, speedup over N = 1.

    python benchmarks/bench_scaling.py                # 2 nodes x 4 CPUs, 8,192-row pool
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


def bench_scoring(args, shards: Path, ckpt: Path) -> dict[str, Any]:
    from raydal.distributed.score import release_scoring_actors, score_pool_ray
    from raydal.query import get_strategy

    strategy = get_strategy("mge+clustering")
    k = strategy.candidate_count(max(1, args.pool // 40), 4)
    run = lambda n: score_pool_ray(ckpt, shards, None, strategy, k, concurrency=n, batch_size=args.batch)  # noqa: E731
    t_cold, _ = _timed(lambda: run(max(args.actors)))  # starts the actors every later call reuses
    rows, base, ref = [], None, None
    for n in args.actors:
        t, got = _timed(lambda: run(n))
        ref = got if ref is None else ref
        base = t if base is None else base
        ideal = args.pool * args.ms_per_row / 1000.0 / n
        rows.append({"workers": n, "seconds": t, "rows_per_s": args.pool / t, "speedup": base / t,
                     "efficiency": base / t / n, "ideal_seconds": ideal,
                     "same_candidates": bool(np.array_equal(got.cand_ids, ref.cand_ids))})
    release_scoring_actors()
    return {"cold_first_call_seconds": t_cold, "k": k, "rows": rows}


def bench_training(args, shards: Path, work: Path) -> dict[str, Any]:
    from raydal.distributed.train import train_with_ray
    from raydal.training import ModelSpec, TrainConfig

    labeled = [f"p{i:07d}" for i in range(args.labeled)]
    spec = ModelSpec(standin.NAME, 15, 4)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, augment=False, seed=0)
    rows, base = [], None
    for n in args.workers:
        t_fit, result = _timed(lambda: train_with_ray(
            spec, cfg, shards, labeled, work / f"train-{n}", num_workers=n, cpus_per_worker=1,
            validate=False, run_name=f"scaling-{n}",
        ))
        epochs = [h["seconds"] for h in result.history]
        epoch = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
        base = epoch if base is None else base
        ideal = args.labeled * args.ms_per_row / 1000.0 / n
        rows.append({"workers": n, "epoch_seconds": epoch, "first_epoch_seconds": epochs[0], "fit_seconds": t_fit,
                     "speedup": base / epoch, "efficiency": base / epoch / n, "ideal_epoch_seconds": ideal})
    return {"epochs": args.epochs, "rows": rows}


def run(args) -> dict[str, Any]:
    import ray
    import torch

    from raydal.models import create_model, save_checkpoint

    os.environ[standin.LATENCY_ROW_ENV] = str(args.ms_per_row)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-scaling-"))
    shards = simulated.write_pool(work / "shards", args.pool, rows_per_file=args.rows_per_file)
    standin.register()
    ckpt = save_checkpoint(work / "checkpoint", create_model(standin.NAME, 15, 4, ll=True, seed=0))
    cluster = simulated.start_cluster(args.nodes, args.cpus, f"/tmp/raydal-scaling-{os.getpid()}")
    try:
        res: dict[str, Any] = {
            "benchmark": "scaling", "stand_in": f"{standin.NAME}: sleeps {args.ms_per_row} ms per row per forward pass",
            "cluster": f"{args.nodes} nodes x {args.cpus} logical CPUs (ray.cluster_utils.Cluster on 127.0.0.1)",
            "pool": args.pool, "batch": args.batch, "labeled": args.labeled,
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                       f"ray {ray.__version__}, load avg {os.getloadavg()[0]:.1f}",
        }
        if args.actors:
            res["scoring"] = bench_scoring(args, shards, ckpt)
            print_scoring(res)
        if args.workers:
            res["training"] = bench_training(args, shards, work)
            print_training(res)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return res


def print_scoring(res):
    s = res["scoring"]
    print(f"# scoring {res['pool']} rows, batch {res['batch']}, {res['stand_in']}; {res['cluster']}; {res['machine']}")
    print(f"first (cold) call with {s['rows'][-1]['workers']} actors: {s['cold_first_call_seconds']:.1f} s")
    print(f"{'actors':>6s} {'seconds':>8s} {'ideal s':>8s} {'rows/s':>8s} {'speedup':>8s} {'/ N':>6s}  same candidates")
    for r in s["rows"]:
        print(f"{r['workers']:6d} {r['seconds']:8.2f} {r['ideal_seconds']:8.2f} {r['rows_per_s']:8.0f} "
              f"{r['speedup']:8.2f} {r['efficiency']:6.2f}  {'yes' if r['same_candidates'] else 'NO'}")


def print_training(res):
    t = res["training"]
    print(f"# training {res['labeled']} labeled rows, global batch {res['batch']}, {t['epochs']} epochs, {res['stand_in']}")
    print(f"{'workers':>7s} {'epoch s':>8s} {'ideal s':>8s} {'1st ep s':>8s} {'fit s':>7s} {'speedup':>8s} {'/ N':>6s}")
    for r in t["rows"]:
        print(f"{r['workers']:7d} {r['epoch_seconds']:8.2f} {r['ideal_epoch_seconds']:8.2f} {r['first_epoch_seconds']:8.2f} "
              f"{r['fit_seconds']:7.1f} {r['speedup']:8.2f} {r['efficiency']:6.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=4, help="logical CPUs per node")
    p.add_argument("--pool", type=int, default=8192)
    p.add_argument("--rows-per-file", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32, help="scoring batch and global training batch")
    p.add_argument("--ms-per-row", type=float, default=2.0, help="the stand-in's sleep per row of a forward pass")
    p.add_argument("--actors", default="1,2,4,8", help="scoring actor counts ('' to skip)")
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
    args.actors = [int(c) for c in str(args.actors).split(",") if c]
    args.workers = [int(c) for c in str(args.workers).split(",") if c]
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only cluster
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    main()
