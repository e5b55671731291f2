"""Diversity step: raydal's k-means backends vs scikit-learn on the same features.

The paper's TreeSatAI query clusters the m*b = 4 x 1000 = 4,000 most uncertain
samples' DenseNet121 embeddings (D = 1,024) into b = 1,000 clusters. This
benchmark times ``raydal.query.kmeans`` and the whole ``select_diverse`` per
backend against ``sklearn.cluster.KMeans(init="k-means++", n_init=1)`` (its
defaults otherwise, max_iter=300) on the same synthetic embedding-like features,
and prints time ratios and inertia side by side.

    python benchmarks/bench_clustering.py            # 4,000 x 1,024 -> 1,000
    python benchmarks/bench_clustering.py --small    # smoke size: 400 x 64 -> 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np


def embedding_like(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features (like ReLU + global average pooling) around n/16 modes, and uncertainties.

    Returns (features float32 [n, d], uncertainty float64 [n]).
    """
    r = np.random.default_rng(seed)
    modes = r.gamma(1.0, 1.0, size=(max(1, n // 16), d))
    feats = np.maximum(modes[r.integers(len(modes), size=n)] + 0.5 * r.normal(size=(n, d)), 0.0)
    return feats.astype(np.float32), r.random(n)


def _timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(n: int, d: int, k: int, seed: int, backends: list[str], niter: int) -> dict[str, Any]:
    import torch
    from sklearn.cluster import KMeans

    from raydal.query import kmeans, select_diverse

    x, unc = embedding_like(n, d, seed)
    kmeans(x[: min(n, 10 * 8)], 8, seed=seed, backend="torch")  # warm-up: torch kernels, thread pools
    t_ref, ref = _timed(lambda: KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed).fit(x))
    rows: list[dict[str, Any]] = [
        {
            "method": "sklearn KMeans(k-means++, n_init=1)",
            "seconds": t_ref,
            "inertia": float(ref.inertia_),
            "iterations": int(ref.n_iter_),
        }
    ]
    for backend in backends:
        t_km, res = _timed(lambda: kmeans(x, k, seed=seed, niter=niter, backend=backend))
        t_sel, picks = _timed(lambda: select_diverse(unc, x, b=k, m=n // k, seed=seed, backend=backend, niter=niter))
        rows.append(
            {
                "method": f"raydal kmeans backend={backend} ({res.backend}, niter={niter})",
                "seconds": t_km,
                "inertia": res.inertia,
                "select_diverse_seconds": t_sel,
                "distinct_picks": int(len(set(picks.tolist()))),
            }
        )
    for row in rows:
        row["time_vs_sklearn"] = row["seconds"] / t_ref
        row["inertia_vs_sklearn"] = row["inertia"] / float(ref.inertia_)
    return {
        "benchmark": "clustering",
        "n": n,
        "d": d,
        "k": k,
        "seed": seed,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"cuda={torch.cuda.is_available()}, load avg {os.getloadavg()[0]:.1f}",
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"# {result['n']} x {result['d']} -> {result['k']} clusters on {result['machine']}")
    print(
        f"{'method':58s} {'seconds':>9s} {'x sklearn':>9s} {'inertia':>12s} {'/ sklearn':>9s} {'select_diverse s':>16s}"
    )
    for r in result["rows"]:
        sel = f"{r['select_diverse_seconds']:.2f}" if "select_diverse_seconds" in r else "-"
        print(
            f"{r['method']:58s} {r['seconds']:9.2f} {r['time_vs_sklearn']:9.3f} {r['inertia']:12.5g} "
            f"{r['inertia_vs_sklearn']:9.4f} {sel:>16s}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="candidates (m*b)")
    p.add_argument("--d", type=int, default=1024, help="embedding width")
    p.add_argument("--k", type=int, default=1000, help="clusters (b)")
    p.add_argument("--niter", type=int, default=20, help="raydal k-means iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", default="faiss,torch", help="comma-separated raydal backends")
    p.add_argument("--small", action="store_true", help="smoke size: 400 x 64 -> 100")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    if args.small:
        args.n, args.d, args.k = 400, 64, 100
    result = run(args.n, args.d, args.k, args.seed, [b for b in args.backends.split(",") if b], args.niter)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
