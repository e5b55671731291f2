"""One-call GPU check and benchmark (no Ray, FAISS or rasterio needed).

Run on a GPU machine from the repository root:

    PYTHONPATH=. python3 benchmarks/gpu_session.py --out results_dir

It measures, in one process, on raydal's own code paths:
  1. DenseNet121 (4 bands, 288x288, 15 classes, LL module) train steps
     (``raydal.training.loop.train_step``, the step ``fit`` runs) at the
     paper's TreeSatAI batch of 100: bf16 autocast vs fp32 (channels_last on CUDA).
  2. Pool scoring (``raydal.query.score_pool``) over a TreeSatAI-sized pool of
     38,531 images for LL, MGE and TPD: images/s, bf16 vs fp32 for MGE.
  3. Diversity: ``select_diverse`` on the m*b = 4,000 top candidates into
     b = 1,000 clusters, torch k-means on the GPU vs on the CPU vs scikit-learn.
  4. The time to select b = 1,000 from the pool (scoring + selection), beside the
     paper's Table I (one A100): LL 141.5 s, TPD 188.1 s, MGE 142.2 s.
The pool is a few real uint8 batches cycled with fresh ids, so host-side image
decoding is not part of the figures (the Ray Data path overlaps it with compute).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from raydal.models import create_model
from raydal.query import get_strategy, kmeans, score_pool, select_diverse

PAPER_TABLE_I = {"ll+clustering": 141.5, "tpd+clustering": 188.1, "mge+clustering": 142.2}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeat=1):
    sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    sync()
    return (time.perf_counter() - t0) / repeat, out


def bench_train(device, size, batch, steps, amp):
    """``raydal.training.loop.train_step`` (the step ``fit`` runs) with the LL module: bf16 or fp32."""
    from raydal.training import TrainConfig
    from raydal.training.loop import make_optimizers, train_step

    cfg = TrainConfig(batch_size=batch, lr=0.01, amp="bf16" if amp else "off")
    model = create_model("densenet121", num_classes=15, in_channels=4, ll=True).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # as fit does on CUDA
    model.train()
    optimizers = make_optimizers(model, cfg)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    batch_data = {
        "image": rng.integers(0, 256, (batch, size, size, 4), dtype=np.uint8),
        "labels": (rng.random((batch, 15)) < 0.2).astype(np.uint8),
    }

    def step():
        return train_step(model, batch_data, cfg, optimizers, device=device, generator=gen)

    for _ in range(3):
        step()
    sec, _ = timed(step, steps)
    return {"amp_bf16": amp, "batch": batch, "sec_per_step": sec, "images_per_s": batch / sec}


def bench_fit(device, size, n, epochs, batch):
    """The real training loop (``train_in_process``: bf16 + channels_last on CUDA) and ``evaluate``."""
    import tempfile

    from raydal.models import ModelSpec, load_checkpoint
    from raydal.training import TrainConfig, evaluate, train_in_process

    rng = np.random.default_rng(0)
    labels = (rng.random((n, 15)) < 0.2).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, 15, n)] = 1
    images = rng.integers(0, 256, (n, size, size, 4), dtype=np.uint8)
    images[..., 0] = (labels[:, :4] @ np.array([40, 60, 80, 70])).clip(0, 255)[:, None, None]  # learnable signal
    data = {"image": images, "labels": labels}
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=0.01, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_in_process(ModelSpec("densenet121", 15, 4), cfg, data, out_dir=tmp, device=device)
        sync()
        t_fit = time.perf_counter() - t0
        model = load_checkpoint(result.checkpoint_dir, device=device)
        t_eval, metrics = timed(lambda: evaluate(model, [data], device))
    return {
        "images": n,
        "epochs": epochs,
        "fit_s": t_fit,
        "eval_s": t_eval,
        "train_loss_first": result.history[0].get("train_loss"),
        "train_loss_last": result.history[-1].get("train_loss"),
        "micro_f1_train": metrics.get("micro_f1"),
    }


def pool_batches(n, batch, size, bands=4, distinct=4, seed=0):
    rng = np.random.default_rng(seed)
    blocks = [rng.integers(0, 256, (batch, size, size, bands), dtype=np.uint8) for _ in range(distinct)]
    for i, start in enumerate(range(0, n, batch)):
        rows = min(batch, n - start)
        yield {"id": np.array([f"p{start + j:07d}" for j in range(rows)]), "image": blocks[i % distinct][:rows]}


def bench_query(device, n, size, batch, b, m, strategy_name, amp=True, prev=None):
    model = create_model("densenet121", num_classes=15, in_channels=4, ll=True).to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    strategy = get_strategy(strategy_name)
    k = strategy.candidate_count(b, m)
    mode = "auto" if amp else "off"  # TrainConfig.amp: "auto" is bf16 on CUDA
    # warm-up (cudnn autotuning, allocator)
    score_pool(model, pool_batches(2 * batch, batch, size), strategy, k, prev_probs=None, device=device, amp=mode)
    t_score, scores = timed(
        lambda: score_pool(model, pool_batches(n, batch, size), strategy, k, prev_probs=prev, device=device, amp=mode)
    )
    t_select, picks = timed(lambda: strategy.select(b, scores=scores, m=m, seed=0))
    assert len(set(picks)) == b
    return {
        "strategy": strategy_name,
        "pool": n,
        "b": b,
        "m": m,
        "amp_bf16": amp,
        "score_s": t_score,
        "images_per_s": n / t_score,
        "select_s": t_select,
        "total_s": t_score + t_select,
        "paper_table1_a100_s": PAPER_TABLE_I.get(strategy_name),
    }, scores


def bench_clustering(n=4000, d=1024, k=1000, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k // 4, d)).astype(np.float32) * 4
    x = centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, d)).astype(np.float32)
    unc = rng.random(n)
    out = {}
    runs = [("torch_cuda", dict(backend="torch", device="cuda"))] if torch.cuda.is_available() else []
    runs += [("torch_cpu", dict(backend="torch", device="cpu")), ("sklearn", dict(backend="sklearn"))]
    for name, kw in runs:
        if name == "torch_cuda":
            kmeans(x[:500], 50, seed=seed, **kw)  # warm-up
        sec, res = timed(lambda: kmeans(x, k, seed=seed, **kw))
        out[name] = {"seconds": sec, "inertia": res.inertia}
    t_sel, picks = timed(lambda: select_diverse(unc, x, b=k, m=n // k, seed=seed, backend="torch"))
    out["select_diverse_auto_torch"] = {"seconds": t_sel, "distinct": int(len(set(picks.tolist())))}
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("gpu_results"))
    p.add_argument("--pool", type=int, default=38531)
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--small", action="store_true", help="tiny sizes (a CPU smoke run)")
    args = p.parse_args(argv)
    if args.small:
        args.pool, args.size = 96, 32
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    res = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "pool": args.pool,
        "size": args.size,
    }
    print(json.dumps({k: res[k] for k in ("device", "torch")}), flush=True)
    steps = 2 if args.small else 10
    batch = 8 if args.small else 100
    res["train"] = [
        bench_train(device, args.size, batch, steps, amp)
        for amp in ((False,) if device.type != "cuda" else (True, False))
    ]
    print("train", json.dumps(res["train"]), flush=True)
    res["fit"] = bench_fit(device, args.size, 32 if args.small else 400, 2 if args.small else 3, batch)
    print("fit", json.dumps(res["fit"]), flush=True)
    sbatch = 16 if args.small else 256
    b, m = (8, 4) if args.small else (1000, 4)
    res["query"] = []
    mge, scores = bench_query(device, args.pool, args.size, sbatch, b, m, "mge+clustering")
    res["query"].append(mge)
    res["query"].append(bench_query(device, args.pool, args.size, sbatch, b, m, "ll+clustering")[0])
    res["query"].append(
        bench_query(device, args.pool, args.size, sbatch, b, m, "tpd+clustering", prev=scores.prev_probs)[0]
    )
    if device.type == "cuda":
        res["query"].append(bench_query(device, args.pool, args.size, sbatch, b, m, "mge+clustering", amp=False)[0])
    print("query", json.dumps(res["query"]), flush=True)
    res["clustering"] = bench_clustering(*((400, 64, 100) if args.small else (4000, 1024, 1000)))
    print("clustering", json.dumps(res["clustering"]), flush=True)
    (args.out / "gpu_results.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
