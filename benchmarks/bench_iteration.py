"""Per-iteration wall time of the AL loop: the Ray executor vs the local executor, demo settings.

Builds the demo's archive (``raydal run --preset demo``: UCMerced layout, 840
images of 32x32, smallcnn, 8 epochs, batch 16, b = 20, m = 3, 40 initial labels,
2 Ray Train workers at 0.5 CPU, one scoring actor), then runs ``--iterations``
AL iterations with each executor in this process (the demo runs the same loop
inside the driver actor) and reports, per iteration, the wall time of its
train + evaluate + query phases. The Ray executor keeps one worker group for the
run unless ``--no-keep-workers``: its first iteration pays that start.

Only public entry points are used, so the script also times an older checkout:
``PYTHONPATH=<old tree> python benchmarks/bench_iteration.py``.

    python benchmarks/bench_iteration.py [--iterations 2] [--executors local,ray] [--json out.json]
    python benchmarks/bench_iteration.py --small     # smoke size
    python benchmarks/bench_iteration.py --executors ray --no-keep-workers   # a worker group per iteration
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from raydal.al.executor import LocalExecutor
    from raydal.al.loop import ActiveLearner
    from raydal.distributed.session import ensure_ray

    try:
        from raydal.config import DEMO_PRESET
    except ImportError:  # before the one-source configuration (issue 8)
        from raydal.cli import DEMO_PRESET
    from raydal.config import ALConfig
    from raydal.data.shards import prepare
    from raydal.data.synth import synthesize
    from raydal.distributed.executor import RayExecutor

    demo = dict(DEMO_PRESET)
    demo.update(demo.pop("train", {}))  # older presets kept epochs, batch_size and lr at the top level
    demo.setdefault("size", demo.get("image_size"))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-iter-"))
    shards = workdir / "shards"
    if not (shards / "manifest.json").exists():
        synthesize("ucmerced", workdir / "archive", n=args.n or demo["fake_n"], size=demo["size"], seed=0)
        prepare("ucmerced", workdir / "archive", shards, size=demo["size"], seed=0)
    if not ray.is_initialized():
        ensure_ray()  # as the jobs start it (dashboard on, every CPU)

    rows = []
    for name in args.executors.split(","):
        keep = {} if args.keep_workers is None else {"keep_workers": args.keep_workers}  # older trees lack it
        cfg = ALConfig(
            dataset="ucmerced",
            shards_dir=str(shards),
            state_dir=str(workdir / f"state-{name}-{time.time_ns()}"),
            strategy="mge+clustering",
            b=demo["b"],
            m=demo["m"],
            initial_labeled=demo["initial_labeled"],
            iterations=args.iterations,
            backbone=demo["backbone"],
            warm_start=True,
            train=dict(epochs=args.epochs or demo["epochs"], batch_size=demo["batch_size"], lr=demo["lr"]),
            executor=name,
            num_workers=demo["num_workers"],
            cpus_per_worker=demo["cpus_per_worker"],
            # older demo presets set the scoring actors' concurrency; the current one keeps the default
            **{k: demo[k] for k in ("score_concurrency",) if k in demo},
            **keep,
        )
        executor = {"local": LocalExecutor, "ray": RayExecutor}[name](cfg)
        learner = ActiveLearner(cfg, executor, log=lambda s: print(f"  [{name}] {s}", flush=True))
        per_iter: dict[int, float] = {}
        t_run = time.perf_counter()
        while True:
            tau, phase = learner.state.iteration, learner.state.phase
            t0 = time.perf_counter()
            if not learner.step():
                break
            if phase in ("train", "query"):
                per_iter[tau] = per_iter.get(tau, 0.0) + time.perf_counter() - t0
        total = time.perf_counter() - t_run
        full = [per_iter[t] for t in range(args.iterations)]  # iterations with train + query
        rows.append(
            dict(
                executor=name,
                iteration_seconds=[round(s, 2) for s in full],
                mean_iteration_s=sum(full) / len(full),
                total_s=total,
                selected=[h.get("selected") for h in learner.state.history],
            )
        )
        print(
            f"{name:<6} per iteration {', '.join(f'{s:.1f}' for s in full)} s "
            f"(mean {rows[-1]['mean_iteration_s']:.1f} s), run {total:.1f} s"
        )
    summary = {}
    by = {r["executor"]: r for r in rows}
    if "ray" in by and "local" in by:
        ray_, local = by["ray"]["iteration_seconds"], by["local"]["iteration_seconds"]
        summary["ray_minus_local_s"] = by["ray"]["mean_iteration_s"] - by["local"]["mean_iteration_s"]
        # the first iteration pays the run's one-time starts (a kept worker group: once per run)
        summary["first_ray_minus_local_s"] = ray_[0] - local[0]
        if len(ray_) > 1:
            summary["later_ray_minus_local_s"] = sum(ray_[1:]) / len(ray_[1:]) - sum(local[1:]) / len(local[1:])
        print(
            f"ray - local per iteration: {summary['ray_minus_local_s']:+.1f} s on average, first "
            f"{summary['first_ray_minus_local_s']:+.1f} s, later "
            f"{summary.get('later_ray_minus_local_s', float('nan')):+.1f} s (target <= +5 s)"
        )
    return dict(
        machine=platform.node(),
        cpus=os.cpu_count(),
        load=os.getloadavg()[0],
        date=time.strftime("%Y-%m-%d %H:%M"),
        args=vars(args),
        rows=rows,
        summary=summary,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--executors", default="local,ray")
    p.add_argument("--n", type=int, default=None, help="archive size (default: the demo's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the demo's)")
    p.add_argument("--workdir", default=None)
    keep = p.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep-workers", dest="keep_workers", action="store_true", default=None, help="one Ray Train group per run"
    )
    keep.add_argument(
        "--no-keep-workers", dest="keep_workers", action="store_false", help="a Ray Train group per iteration"
    )
    p.add_argument("--json", default=None)
    p.add_argument("--small", action="store_true", help="smoke size")
    args = p.parse_args(argv)
    if args.small:
        args.iterations, args.n, args.epochs = 1, 200, 1
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
