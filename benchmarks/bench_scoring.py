"""Pool scoring: raydal's Ray Data path vs a plain single-process PyTorch loop, same shards and model.

Writes a fake archive, prepares it into Parquet shards, builds a seeded model
with the LL head and saves its checkpoint, then times in one run:
  plain    read shards -> decode -> preprocess -> forward (inference_mode), nothing else
  local    ``raydal.query.score_pool`` (the same plus uncertainty and the bounded top-K)
  ray xN   ``raydal.distributed.score.score_pool_ray`` with N actors, twice: the first
           call starts the actors and loads the checkpoint; the second finds them warm
           (what every later AL iteration pays), loading only the new checkpoint
  before   with ``--baseline-ref REF``: ``score_pool_ray`` as of git REF (Ray Data's
           ``map_batches`` on a fresh actor pool per call)
and checks that every path keeps the same candidates. Ratios are against plain.

Paper anchor (Table I, one A100): selecting b = 1,000 of TreeSatAI's 38,531-image
pool took 141.5 s (LL), 188.1 s (TPD), 142.2 s (MGE) including clustering.

    python benchmarks/bench_scoring.py                       # smallcnn, 32x32x3, 600 images
    python benchmarks/bench_scoring.py --model densenet121 --dataset treesatai --size 288 --n 200
    python benchmarks/bench_scoring.py --small               # smoke size, one actor
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PAPER_TABLE_I_S = {"ll+clustering": 141.5, "tpd+clustering": 188.1, "mge+clustering": 142.2}
PAPER_POOL = 38531


def prepare_inputs(workdir: Path, dataset: str, n: int, size: int, model_name: str, seed: int):
    """(manifest, model, checkpoint folder) for a fake archive of ``n`` images at ``size``."""
    import torch

    from raydal.data.shards import prepare
    from raydal.data.synth import synthesize
    from raydal.models import create_model, save_checkpoint

    synthesize(dataset, workdir / "archive", n=n, size=max(size, 8), seed=seed)
    manifest = prepare(dataset, workdir / "archive", workdir / "shards", size=size, seed=seed, shard_size=64)
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=manifest.num_classes, in_channels=manifest.bands, ll=True).eval()
    return manifest, model, save_checkpoint(workdir / "checkpoint", model)


def plain_loop(manifest, model, batch_size: int) -> int:
    """The baseline: no raydal scoring code, just read, decode and forward."""
    import torch

    from raydal.data.shards import iter_batches
    from raydal.models import preprocess

    rows = 0
    with torch.inference_mode():
        for batch in iter_batches(manifest, "pool", batch_size):
            out = model(preprocess(batch["image"]))
            torch.sigmoid(out.logits).numpy()
            rows += len(batch["id"])
    return rows


def _load_baseline(ref: str):
    """``raydal/distributed/score.py`` as of git ``ref``, importable by Ray workers (pickled by value)."""
    import subprocess
    import sys
    import types

    import ray.cloudpickle

    root = Path(__file__).resolve().parents[1]
    src = subprocess.check_output(["git", "-C", str(root), "show", f"{ref}:raydal/distributed/score.py"], text=True)
    module = types.ModuleType("raydal_score_baseline")
    sys.modules[module.__name__] = module
    exec(compile(src, f"{ref}:raydal/distributed/score.py", "exec"), module.__dict__)
    ray.cloudpickle.register_pickle_by_value(module)
    return module


def _timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    import torch

    from raydal.data.shards import iter_batches
    from raydal.distributed.score import score_pool_ray
    from raydal.query import get_strategy, score_pool

    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-scoring-"))
    t_prep, (manifest, model, ckpt) = _timed(
        lambda: prepare_inputs(work, args.dataset, args.n, args.size, args.model, args.seed)
    )
    pool = manifest.splits["pool"]["count"]
    strategy = get_strategy(args.strategy)
    b = max(1, pool // 10)
    k = strategy.candidate_count(b, args.m)

    plain_loop(manifest, model, args.batch_size)  # warm-up: page cache, kernels
    # The in-process paths are cheap to repeat: best of --repeat, alternating, so load spikes from
    # other processes hit both alike. The Ray path runs once per actor count.
    t_plain = t_local = float("inf")
    for _ in range(args.repeat):
        t, rows = _timed(lambda: plain_loop(manifest, model, args.batch_size))
        t_plain = min(t_plain, t)
        t, local = _timed(lambda: score_pool(model, iter_batches(manifest, "pool", args.batch_size), strategy, k))
        t_local = min(t_local, t)
    results = [
        {"path": "plain PyTorch loop", "seconds": t_plain},
        {"path": "raydal score_pool (in-process)", "seconds": t_local},
    ]
    if not ray.is_initialized():
        t_init, _ = _timed(
            lambda: ray.init(
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                logging_level="ERROR",
                _temp_dir=str(Path(tempfile.gettempdir()) / f"raydal-bench-{os.getpid()}"),
            )
        )
    else:
        t_init = 0.0
    ray.data.DataContext.get_current().enable_progress_bars = False
    baseline = _load_baseline(args.baseline_ref) if args.baseline_ref else None
    from raydal.models import save_checkpoint

    ckpt_next = save_checkpoint(work / "checkpoint-next", model)  # the next iteration's model (same weights)
    for c in args.concurrency:
        for label, folder in (("first call: starts the actors", ckpt), ("warm: the next iteration's call", ckpt_next)):
            t_ray, got = _timed(
                lambda: score_pool_ray(
                    folder,
                    manifest.root,
                    None,
                    strategy,
                    k,
                    concurrency=c,
                    batch_size=args.batch_size,
                )
            )
            same = bool(np.array_equal(got.cand_ids, local.cand_ids))
            results.append(
                {"path": f"raydal score_pool_ray, {c} actor(s), {label}", "seconds": t_ray, "same_candidates": same}
            )
        if baseline is not None:
            t_ray, got = _timed(
                lambda: baseline.score_pool_ray(
                    ckpt,
                    manifest.root,
                    None,
                    strategy,
                    k,
                    concurrency=c,
                    batch_size=args.batch_size,
                )
            )
            same = bool(np.array_equal(got.cand_ids, local.cand_ids))
            results.append(
                {
                    "path": f"before ({args.baseline_ref}: Ray Data map_batches), {c} actor(s)",
                    "seconds": t_ray,
                    "same_candidates": same,
                }
            )
    from raydal.distributed.score import release_scoring_actors

    release_scoring_actors()
    for r in results:
        r["images_per_s"] = rows / r["seconds"]
        r["x_plain"] = r["seconds"] / t_plain
    return {
        "benchmark": "scoring",
        "model": args.model,
        "dataset": args.dataset,
        "image": list(manifest.image_shape),
        "pool": pool,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "strategy": args.strategy,
        "k": k,
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"cuda={torch.cuda.is_available()}, torch threads {torch.get_num_threads()}, "
        f"load avg {os.getloadavg()[0]:.1f}",
        "prepare_seconds": t_prep,
        "ray_init_seconds": t_init,
        "results": results,
        "paper_table1_a100_s": PAPER_TABLE_I_S.get(args.strategy),
        "plain_extrapolated_to_paper_pool_s": t_plain / rows * PAPER_POOL,
    }


def print_table(res: dict[str, Any]) -> None:
    print(
        f"# {res['model']} on {res['pool']} x {res['image']} ({res['dataset']}), batch {res['batch_size']}, "
        f"{res['strategy']} k={res['k']}; {res['machine']}; ray.init {res['ray_init_seconds']:.1f} s"
    )
    print(f"{'path':62s} {'seconds':>8s} {'img/s':>8s} {'x plain':>8s}  same candidates")
    for r in res["results"]:
        same = {True: "yes", False: "NO"}.get(r.get("same_candidates"), "-")
        print(f"{r['path']:62s} {r['seconds']:8.2f} {r['images_per_s']:8.1f} {r['x_plain']:8.2f}  {same}")
    print(
        f"plain loop extrapolated to the paper's {PAPER_POOL} pool: {res['plain_extrapolated_to_paper_pool_s']:.0f} s "
        f"(paper, one A100, {res['strategy']}: {res['paper_table1_a100_s']} s)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--dataset", default="ucmerced", help="fake archive to generate (ucmerced, treesatai, ...)")
    p.add_argument("--n", type=int, default=600, help="images in the fake archive (the pool is a share of it)")
    p.add_argument("--size", type=int, default=32, help="image side after preparation")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--strategy", default="mge+clustering")
    p.add_argument("--m", type=int, default=4)
    p.add_argument("--concurrency", default="1,2", help="comma-separated actor counts for the Ray path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="runs of the in-process paths (best is kept)")
    p.add_argument("--workdir", help="where to write the archive and shards (default: a temp folder)")
    p.add_argument("--small", action="store_true", help="smoke size: 80 images of 16x16, one actor")
    p.add_argument("--baseline-ref", help="also time score_pool_ray as of this git commit (e.g. 2a8424d, Ray Data)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    if args.small:
        args.n, args.size, args.concurrency, args.repeat = 80, 16, "1", 1
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c]
    result = run(args)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
