"""The AL driver at a 1,000,000-sample pool: seconds of its own work per iteration, and its peak memory.

Default (``--path loop``, the default executor path): this process is the AL
driver. It runs the real ``ActiveLearner`` with the real ``RayExecutor`` for two
AL iterations, as the driver actor does: each iteration is one Ray Train run
(two workers on a simulated 2-node cluster) that trains on the labeled set,
evaluates val and test and scores the unlabeled pool, then selection (FAISS
k-means++ on the m*b candidates), the saved pool probabilities, the state. The
pool has ids of 51 characters (BigEarthNet-like names) and no images
(``simulated.write_pool``: 1 x 1 x 4 "pixels" holding the row number), and the
model is the STAND-IN ``standin_sleep`` backbone without sleep, with D = 1,024
embeddings, under raydal's real head and LL module. Per AL step the driver's
own work is the step's wall time minus the time it waits in the Ray Train run
(``train_with_ray``, which includes receiving the scores). The driver's RSS is
sampled every 50 ms.

``--path actors`` (issue 9's figure): ``score_pool_ray`` on warm actors and
``strategy.select``, two queries (MGE + clustering, then TPD + clustering with
the first pass's probabilities), from a checkpoint written by a child process.

The pool (and checkpoint) are written by a child process, so that the driver's
peak is its own. Only public entry points are used, so the script also measures
an older checkout: ``PYTHONPATH=<old tree> python benchmarks/bench_driver_memory.py``.

    python benchmarks/bench_driver_memory.py                 # 1,000,000 rows, the AL loop
    python benchmarks/bench_driver_memory.py --small         # 20,000 rows
    python benchmarks/bench_driver_memory.py --path actors   # warm scoring actors only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import simulated  # noqa: E402  (no torch in this process: see simulated.py)

LIMIT_BYTES = 2**30


def memory() -> dict[str, int]:
    """This process's resident memory in bytes: ``rss`` in all, of which ``shmem`` is shared memory
    (pages of Ray's object store that the driver has mapped and touched) and ``anon`` its own heap."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssShmem:": "shmem"}
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0] + ":"
            if key in fields:
                out[fields[key]] = int(line.split()[1]) * 1024
    return out


def rss_bytes() -> int:
    return memory()["rss"]


class PeakSampler:
    """The highest resident memory (each of ``memory()``'s figures) seen by a 50 ms sampling thread."""

    def __init__(self):
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> int:
        return self.peaks["rss"]

    def _sample(self):
        for key, value in memory().items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.05)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


#: BigEarthNet patch names are ~50 characters ("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57").
ID_FORMAT = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{:06d}"


def write_data(shards: Path, args) -> None:
    """The pool (ids of 51 characters), and small val and test splits, written by a child process."""
    code = f"""
import sys, json; sys.path.insert(0, {str(HERE)!r})
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
import simulated
from raydal.data.shards import SCHEMA
out = simulated.write_pool({str(shards)!r}, {args.pool}, rows_per_file={args.rows_per_file}, id_format={ID_FORMAT!r})
manifest = json.loads((out / "manifest.json").read_text())
rng = np.random.default_rng(0)
for split, n in (("val", {args.eval_rows}), ("test", {args.eval_rows})):
    (out / split).mkdir(exist_ok=True)
    pixels = rng.integers(0, 256, (n, 4), dtype=np.uint8)
    labels = (rng.random((n, 15)) < 0.2).astype(np.uint8)
    pq.write_table(pa.table({{"id": pa.array([f"{{split}}{{i:07d}}" for i in range(n)], pa.string()),
        "image": simulated._fixed_binary(pixels), "labels": simulated._fixed_binary(labels),
        "path": pa.array([""] * n, pa.string()), "labeled": pa.array(np.ones(n, bool))}}, schema=SCHEMA),
        out / split / "part-00000.parquet")
    manifest["splits"][split] = {{"count": n, "files": [f"{{split}}/part-00000.parquet"]}}
(out / "manifest.json").write_text(json.dumps(manifest))
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(ID_FORMAT.format(0)) == 51


def register_standin() -> str:
    """Register the stand-in backbone in this process without importing torch where raydal allows it."""
    from raydal.models import registry

    try:
        registry.register_model("standin_sleep", "standin:standin_sleep")  # by import path: no torch here
        return "by path"
    except TypeError:  # an older raydal: registering needs the function (and torch)
        import standin

        standin.register()
        return "imported"


def run_loop(args) -> dict[str, Any]:
    import ray

    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-driver-"))
    shards = work / "shards"
    if not (shards / "manifest.json").exists():
        write_data(shards, args)
    os.environ["RAYDAL_STANDIN_MS_PER_ROW"] = "0"
    os.environ["RAYDAL_STANDIN_EMBED"] = str(args.embed)  # inherited by the cluster's workers

    from raydal.al.loop import ActiveLearner
    from raydal.config import ALConfig
    from raydal.distributed import executor as ray_executor_module
    from raydal.distributed import score as score_module
    from raydal.distributed import train as train_module

    registered = register_standin()
    waits: list[tuple[float, float]] = []  # (wall, CPU) seconds this process waited on Ray work in the step

    def timed(fn):
        def wrapper(*a, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                waits.append((time.perf_counter() - t0, time.process_time() - c0))

        return wrapper

    train_module.train_with_ray = timed(train_module.train_with_ray)
    score_module.score_pool_ray = timed(score_module.score_pool_ray)  # the fallback, if it runs
    phases = time_driver_phases()
    cluster = simulated.start_cluster(args.nodes, args.cpus, f"/tmp/raydal-mem-{os.getpid()}")
    res: dict[str, Any] = {
        "benchmark": "driver_loop",
        "pool": args.pool,
        "id_chars": len(ID_FORMAT.format(0)),
        "embed_dim": args.embed,
        "b": args.b,
        "m": args.m,
        "initial_labeled": args.labeled,
        "iterations": args.iterations,
        "eval_rows": args.eval_rows,
        "standin_registered": registered,
        "cluster": f"{args.nodes} nodes x {args.cpus} logical CPUs (ray.cluster_utils.Cluster on 127.0.0.1), "
        f"{args.workers} Ray Train workers x {args.worker_cpus} CPU",
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, ray {ray.__version__}, "
        f"load avg {os.getloadavg()[0]:.1f}",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "steps": [],
    }
    try:
        cfg = ALConfig(
            dataset="bigearthnet",
            shards_dir=str(shards),
            state_dir=str(work / f"state-{time.time_ns()}"),
            strategy=args.strategy,
            b=args.b,
            m=args.m,
            initial_labeled=args.labeled,
            iterations=args.iterations,
            backbone="standin_sleep",
            train=dict(epochs=1, batch_size=100),
            executor="ray",
            num_workers=args.workers,
            cpus_per_worker=args.worker_cpus,
            score_batch_size=args.batch,
        )
        learner = ActiveLearner(cfg, ray_executor_module.RayExecutor(cfg), log=lambda s: print(f"  {s}", flush=True))
        while True:
            tau, phase = learner.state.iteration, learner.state.phase
            waits.clear()
            phases.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            with PeakSampler() as peak:
                more = learner.step()
            if not more:
                break
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            wait = sum(w for w, _ in waits)
            row = {
                "iteration": tau,
                "phase": phase,
                "wall_seconds": round(wall, 3),
                "ray_wait_seconds": round(wait, 3),
                "driver_seconds": round(wall - wait, 3),
                "driver_cpu_seconds": round(cpu - sum(c for _, c in waits), 3),
                "peak_rss_mib": round(peak.peak / 2**20, 1),
                "peak_anon_mib": round(peak.peaks.get("anon", 0) / 2**20, 1),
                "torch_imported": "torch" in sys.modules,
                "driver_phases_seconds": {k: round(v[0], 3) for k, v in phases.items()},
                "driver_phases_cpu_seconds": {k: round(v[1], 3) for k, v in phases.items()},
            }
            res["steps"].append(row)
            if args.json:  # what is measured so far survives a run cut short
                Path(args.json).write_text(json.dumps(res, indent=1))
            print(
                f"iteration {tau} {phase}: {wall:.1f}s wall, {row['driver_seconds']:.2f}s driver work, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
        res["history_seconds"] = [h.get("seconds") for h in learner.state.history]
        res["selected_digest"] = _digest([h.get("selected") for h in learner.state.history])
    finally:
        ray.shutdown()
        cluster.shutdown()
    per_iter: dict[int, dict[str, float]] = {}
    for row in res["steps"]:
        if row["phase"] in ("train", "query"):
            it = per_iter.setdefault(
                row["iteration"],
                {"driver_seconds": 0.0, "driver_cpu_seconds": 0.0, "wall_seconds": 0.0, "select_seconds": 0.0},
            )
            it["driver_seconds"] += row["driver_seconds"]
            it["driver_cpu_seconds"] += row["driver_cpu_seconds"]
            it["wall_seconds"] += row["wall_seconds"]
            it["select_seconds"] += row["driver_phases_seconds"].get(SELECT, 0.0)
            it[f"{row['phase']}_driver_seconds"] = row["driver_seconds"]
    res["per_iteration"] = {str(k): {a: round(v, 3) for a, v in d.items()} for k, d in sorted(per_iter.items())}
    res["max_driver_seconds_per_iteration"] = max(d["driver_seconds"] for d in per_iter.values())
    res["max_driver_seconds_per_iteration_without_select"] = max(
        d["driver_seconds"] - d["select_seconds"] for d in per_iter.values()
    )
    res["peak_rss_mib"] = max(r["peak_rss_mib"] for r in res["steps"])
    res["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["torch_imported_by_driver"] = "torch" in sys.modules
    res["within_5_s"] = res["max_driver_seconds_per_iteration"] <= 5.0
    res["within_1_gb"] = res["peak_rss_mib"] * 2**20 <= 10**9
    print(
        f"driver: <= {res['max_driver_seconds_per_iteration']:.1f} s of work per iteration "
        f"({res['max_driver_seconds_per_iteration_without_select']:.1f} s besides k-means), peak RSS "
        f"{res['peak_rss_mib']:.0f} MiB (ru_maxrss {res['ru_maxrss_mib']:.0f}), torch imported: "
        f"{res['torch_imported_by_driver']}; {res['machine']}"
    )
    return res


SELECT = "select (k-means++ on the m*b candidates)"
#: What the driver does per AL step, timed by wrapping these (owner module, class or None, attribute) where
#: they exist (an older checkout has some of them): phase name -> target. Nested calls count in both.
PHASE_TARGETS = {
    "labeled set over the pool": [
        ("raydal.al.loop", "ActiveLearner", "_labeled_mask"),
        ("raydal.al.loop", "ActiveLearner", "_query_inputs"),
    ],
    "read previous probabilities": [("raydal.al.state", "StateStore", "load_probs")],
    "scores cache key": [("raydal.distributed.executor", None, "query_key")],
    "write scores beside the checkpoint": [("raydal.distributed.executor", None, "save_pool_scores")],
    SELECT: [("raydal.query.base", "QueryStrategy", "select")],
    "probabilities of the selection": [("raydal.al.executor", "QueryResult", "from_scores")],
    "write pool probabilities": [("raydal.al.state", "StateStore", "save_probs")],
    "write state.json": [("raydal.al.state", "StateStore", "save")],
}


def time_driver_phases() -> dict[str, list[float]]:
    """Wrap the driver's per-step functions (``PHASE_TARGETS``); returns the dict their [wall, CPU] seconds add up in."""
    import importlib

    totals: dict[str, list[float]] = {}
    for phase, targets in PHASE_TARGETS.items():
        for module_name, cls_name, attr in targets:
            module = importlib.import_module(module_name)
            owner = getattr(module, cls_name) if cls_name else module
            fn = owner.__dict__.get(attr) if cls_name else getattr(owner, attr, None)
            if fn is None:
                continue
            unwrapped = fn.__func__ if isinstance(fn, classmethod) else fn

            def wrapper(*a, _fn=unwrapped, _phase=phase, **kw):
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    return _fn(*a, **kw)
                finally:
                    got = totals.setdefault(_phase, [0.0, 0.0])
                    got[0] += time.perf_counter() - t0
                    got[1] += time.process_time() - c0

            setattr(owner, attr, classmethod(wrapper) if isinstance(fn, classmethod) else wrapper)
    return totals


def _digest(value) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


def run_actors(args) -> dict[str, Any]:
    import ray

    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-memory-"))
    shards = work / "shards"
    ckpt = work / "checkpoint"
    if not (shards / "manifest.json").exists():  # written by a child process, which also imports torch
        code = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); import simulated, standin; "
            f"simulated.write_pool({str(shards)!r}, {args.pool}, rows_per_file={args.rows_per_file}); "
            "standin.register(); from raydal.models import create_model, save_checkpoint; "
            f"save_checkpoint({str(ckpt)!r}, create_model(standin.NAME, 15, 4, ll=True, seed=0))"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    from raydal.distributed.score import release_scoring_actors, score_pool_ray
    from raydal.query import get_strategy

    os.environ["RAYDAL_STANDIN_MS_PER_ROW"] = "0"
    if args.import_torch:  # as in the AL driver actor, which also evaluates checkpoints
        import torch  # noqa: F401
    cluster = simulated.start_cluster(args.nodes, args.cpus, f"/tmp/raydal-mem-{os.getpid()}")
    labeled = {f"p{i:07d}" for i in range(0, args.pool, max(1, args.pool // args.labeled))}
    res: dict[str, Any] = {
        "benchmark": "driver_memory",
        "pool": args.pool,
        "labeled": len(labeled),
        "b": args.b,
        "m": args.m,
        "actors": args.actors,
        "batch": args.batch,
        "cluster": f"{args.nodes} nodes x {args.cpus} logical CPUs (ray.cluster_utils.Cluster on 127.0.0.1)",
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, ray {ray.__version__}, "
        f"load avg {os.getloadavg()[0]:.1f}",
        "queries": [],
    }
    try:
        prev = None
        for name in ("mge+clustering", "tpd+clustering"):
            strategy = get_strategy(name, backend="faiss")  # "auto" would import torch to look for CUDA
            k = strategy.candidate_count(args.b, args.m)
            before = rss_bytes()
            lines: list[str] = []
            t0 = time.perf_counter()
            with PeakSampler() as peak:
                scores = score_pool_ray(
                    ckpt,
                    shards,
                    labeled,
                    strategy,
                    k,
                    prev,
                    concurrency=args.actors,
                    batch_size=args.batch,
                    progress=lines.append,
                )
                t_score = time.perf_counter() - t0
                picks = strategy.select(args.b, scores=scores, m=args.m, seed=0)
            assert len(set(picks)) == args.b and not set(picks) & labeled
            row = {
                "strategy": name,
                "rows_scored": int(len(scores.ids)),
                "candidates": int(len(scores.cand_ids)),
                "score_seconds": t_score,
                "total_seconds": time.perf_counter() - t0,
                "rss_before_mib": before / 2**20,
                "peak_rss_mib": peak.peak / 2**20,
                "peak_anon_mib": peak.peaks.get("anon", 0) / 2**20,
                "peak_shmem_mib": peak.peaks.get("shmem", 0) / 2**20,
                "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            res["queries"].append(row)
            print(
                f"{name}: scored {row['rows_scored']:,} rows in {t_score:.1f}s, selected {args.b} of "
                f"{row['candidates']} candidates; driver RSS {row['rss_before_mib']:.0f} MiB before, "
                f"peak {row['peak_rss_mib']:.0f} MiB (heap {row['peak_anon_mib']:.0f}, object-store pages "
                f"{row['peak_shmem_mib']:.0f}; ru_maxrss {row['ru_maxrss_mib']:.0f} MiB)",
                flush=True,
            )
            prev = scores.prev_probs  # what the loop keeps for TPD's next round
            del scores
        release_scoring_actors()
    finally:
        ray.shutdown()
        cluster.shutdown()
    res["peak_rss_mib"] = max(q["peak_rss_mib"] for q in res["queries"])
    res["torch_imported_by_driver"] = "torch" in sys.modules
    res["within_1_gib"] = res["peak_rss_mib"] * 2**20 <= LIMIT_BYTES
    print(
        f"driver peak RSS {res['peak_rss_mib']:.0f} MiB for a {args.pool:,}-sample pool: "
        f"{'<=' if res['within_1_gib'] else '>'} 1 GiB; {res['machine']}"
    )
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--path",
        choices=("loop", "actors"),
        default="loop",
        help="loop: the AL driver with the Ray executor (default path); actors: warm scoring actors",
    )
    p.add_argument("--pool", type=int, default=1_000_000)
    p.add_argument("--rows-per-file", type=int, default=50_000)
    p.add_argument("--labeled", type=int, default=1000, help="labeled ids (loop: the initial labeled set)")
    p.add_argument("--iterations", type=int, default=2, help="loop: AL iterations (query rounds)")
    p.add_argument("--strategy", default="mge+clustering", help="loop: the query strategy")
    p.add_argument("--embed", type=int, default=1024, help="loop: the stand-in's embedding width D")
    p.add_argument("--workers", type=int, default=2, help="loop: Ray Train workers")
    p.add_argument("--worker-cpus", type=float, default=0.5, help="loop: CPUs per Ray Train worker")
    p.add_argument("--eval-rows", type=int, default=2000, help="loop: rows of val and of test")
    p.add_argument("--b", type=int, default=1000)
    p.add_argument("--m", type=int, default=4)
    p.add_argument("--actors", type=int, default=4)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="logical CPUs per node")
    p.add_argument("--workdir", help="reuses a pool already written there")
    p.add_argument(
        "--import-torch", action="store_true", help="import torch in the driver first (the AL driver actor does)"
    )
    small = {"pool": 20_000, "rows_per_file": 5_000, "b": 100, "actors": 2, "labeled": 100, "eval_rows": 200}
    p.add_argument("--small", action="store_true", help=f"smoke size: {small} unless given")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.small:
        for name, value in small.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    result = run_loop(args) if args.path == "loop" else run_actors(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only cluster
    main()
