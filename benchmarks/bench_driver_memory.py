"""Peak memory of the driver while a query selects from a 1,000,000-sample pool.

The pool has ids and labels but no images (``benchmarks/standin.py``'s
``simulated.write_pool``: 1 x 1 x 4 "pixels" holding the row number, in the real Parquet
shard layout), and the model is the STAND-IN ``standin_sleep`` backbone (no
sleep here) under raydal's real head and LL module. Everything else is the
real path: ``score_pool_ray`` on warm actors over a simulated 2-node cluster,
the top-K merge in the driver, ``PoolScores``, and ``strategy.select``
(k-means++ on the m*b candidates). Two queries run, as in two AL iterations:
MGE + clustering, then TPD + clustering with the first pass's probabilities as
``prev_probs`` (what the loop keeps for TPD).

The pool and the checkpoint are written by a child process so that the
driver's peak is the query's: the driver imports Ray, NumPy, pyarrow, FAISS
and raydal's query code, not torch (whose CUDA build alone takes ~650 MiB of
RSS here).
The driver's RSS is sampled every 50 ms; ``ru_maxrss`` (the process's lifetime
peak) is printed beside it.

    python benchmarks/bench_driver_memory.py                 # 1,000,000 rows
    python benchmarks/bench_driver_memory.py --small         # 20,000 rows
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


def run(args) -> dict[str, Any]:
    import ray

    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-memory-"))
    shards = work / "shards"
    ckpt = work / "checkpoint"
    if not (shards / "manifest.json").exists():  # written by a child process, which also imports torch
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import simulated, standin; "
                f"simulated.write_pool({str(shards)!r}, {args.pool}, rows_per_file={args.rows_per_file}); "
                "standin.register(); from raydal.models import create_model, save_checkpoint; "
                f"save_checkpoint({str(ckpt)!r}, create_model(standin.NAME, 15, 4, ll=True, seed=0))")
        subprocess.run([sys.executable, "-c", code], check=True)

    from raydal.distributed.score import release_scoring_actors, score_pool_ray
    from raydal.query import get_strategy

    os.environ["RAYDAL_STANDIN_MS_PER_ROW"] = "0"
    if args.import_torch:  # as in the AL driver actor, which also evaluates checkpoints
        import torch  # noqa: F401
    cluster = simulated.start_cluster(args.nodes, args.cpus, f"/tmp/raydal-mem-{os.getpid()}")
    labeled = {f"p{i:07d}" for i in range(0, args.pool, max(1, args.pool // args.labeled))}
    res: dict[str, Any] = {
        "benchmark": "driver_memory", "pool": args.pool, "labeled": len(labeled), "b": args.b, "m": args.m,
        "actors": args.actors, "batch": args.batch,
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
                scores = score_pool_ray(ckpt, shards, labeled, strategy, k, prev, concurrency=args.actors,
                                        batch_size=args.batch, progress=lines.append)
                t_score = time.perf_counter() - t0
                picks = strategy.select(args.b, scores=scores, m=args.m, seed=0)
            assert len(set(picks)) == args.b and not set(picks) & labeled
            row = {"strategy": name, "rows_scored": int(len(scores.ids)), "candidates": int(len(scores.cand_ids)),
                   "score_seconds": t_score, "total_seconds": time.perf_counter() - t0,
                   "rss_before_mib": before / 2**20, "peak_rss_mib": peak.peak / 2**20,
                   "peak_anon_mib": peak.peaks.get("anon", 0) / 2**20, "peak_shmem_mib": peak.peaks.get("shmem", 0) / 2**20,
                   "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            res["queries"].append(row)
            print(f"{name}: scored {row['rows_scored']:,} rows in {t_score:.1f}s, selected {args.b} of "
                  f"{row['candidates']} candidates; driver RSS {row['rss_before_mib']:.0f} MiB before, "
                  f"peak {row['peak_rss_mib']:.0f} MiB (heap {row['peak_anon_mib']:.0f}, object-store pages "
                  f"{row['peak_shmem_mib']:.0f}; ru_maxrss {row['ru_maxrss_mib']:.0f} MiB)", flush=True)
            prev = scores.prev_probs  # what the loop keeps for TPD's next round
            del scores
        release_scoring_actors()
    finally:
        ray.shutdown()
        cluster.shutdown()
    res["peak_rss_mib"] = max(q["peak_rss_mib"] for q in res["queries"])
    res["torch_imported_by_driver"] = "torch" in sys.modules
    res["within_1_gib"] = res["peak_rss_mib"] * 2**20 <= LIMIT_BYTES
    print(f"driver peak RSS {res['peak_rss_mib']:.0f} MiB for a {args.pool:,}-sample pool: "
          f"{'<=' if res['within_1_gib'] else '>'} 1 GiB; {res['machine']}")
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=1_000_000)
    p.add_argument("--rows-per-file", type=int, default=50_000)
    p.add_argument("--labeled", type=int, default=1000, help="labeled ids excluded from scoring")
    p.add_argument("--b", type=int, default=1000)
    p.add_argument("--m", type=int, default=4)
    p.add_argument("--actors", type=int, default=4)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="logical CPUs per node")
    p.add_argument("--workdir", help="reuses a pool already written there")
    p.add_argument("--import-torch", action="store_true", help="import torch in the driver first (the AL driver actor does)")
    small = {"pool": 20_000, "rows_per_file": 5_000, "b": 100, "actors": 2}
    p.add_argument("--small", action="store_true", help=f"smoke size: {small} unless given")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.small:
        for name, value in small.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only cluster
    main()
