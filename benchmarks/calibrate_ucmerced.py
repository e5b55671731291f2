"""Calibrate the generated UC Merced archive's difficulty on random sampling only.

    .venv/bin/python benchmarks/calibrate_ucmerced.py [--difficulty D] [--set KNOB=VALUE ...] [--trials 1]

Generates the fidelity study's archive (``benchmarks/fidelity_study.py`` size ``cpu``: 840 images at
32 px) with the given generator settings, prepares its shards and runs ``--trials`` trials of
**random sampling** at the study's protocol shape (40 initial labels, b = 20, up to 200 labels,
smallcnn, warm start), then prints test micro- and macro-F1 at every label count. No other strategy
is run: the archive's difficulty is set so that random reaches the paper's random baseline
(UCMerced: ~78% micro-F1 at 200 labels), blind to how the query functions do on it.
docs/data.md ("Calibration") records the settings tried and what they gave.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fidelity_study import SIZES, base_config  # noqa: E402
from raydal.al.experiment import ensure_shards, run_trial_local, trial_configs  # noqa: E402
from raydal.data.synth import synthesize  # noqa: E402


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--difficulty", type=float, default=None, help="synthesize's difficulty (default: the generator's)")
    p.add_argument(
        "--set", dest="options", action="append", default=[], metavar="KNOB=VALUE", help="a generator option"
    )
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="first trial's seed")
    p.add_argument("--label-budget", type=int, default=None, help="default: the size's (cpu: 200)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "calibrate")
    args = p.parse_args(argv)
    options = {k: _value(v) for k, v in (o.split("=", 1) for o in args.options)}
    if args.difficulty is not None:
        options["difficulty"] = args.difficulty
    tag = "-".join(f"{k}{v}" for k, v in sorted(options.items())) or "defaults"
    runs = args.runs / tag
    shutil.rmtree(runs, ignore_errors=True)
    size = SIZES[args.size]
    archive = runs / "shards-archive"
    synthesize("ucmerced", archive, n=size["fake_n"], size=size["image_size"], seed=0, **options)
    shards = ensure_shards("ucmerced", runs / "shards", None, size["image_size"], size["fake_n"], seed=0)
    if size["torch_threads"]:
        import torch

        torch.set_num_threads(size["torch_threads"])
    base = dataclasses.replace(base_config(size, runs, shards, args.seed), state_dir=str(runs / "random"))
    if args.label_budget:
        base = dataclasses.replace(base, label_budget=args.label_budget)
    print(f"settings {options or 'generator defaults'}; random sampling, {args.trials} trial(s)", flush=True)
    for cfg in trial_configs(base, args.trials):
        t0 = time.perf_counter()
        curve = run_trial_local(cfg)["curve"]
        points = ", ".join(f"{c['n_labeled']}: {100 * c['micro_f1']:.1f}/{100 * c['macro_f1']:.1f}" for c in curve)
        print(f"seed {cfg.seed} ({time.perf_counter() - t0:.0f}s) labels: micro/macro F1 {points}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
