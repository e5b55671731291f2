"""The paper's findings at reduced scale: do the query functions beat random sampling?

One command, resumable (every trial is a raydal state dir; a rerun skips what is
done and resumes what was interrupted):

    .venv/bin/python benchmarks/fidelity_study.py                 # CPU size, 5 trials: ~21 min on 2 shared cores
    .venv/bin/python benchmarks/fidelity_study.py --size gpu --jobs 6  # larger size, for a GPU box
    .venv/bin/python benchmarks/fidelity_study.py --report-only   # tables and figure from what ran
    .venv/bin/python benchmarks/fidelity_study.py --size small --trials 2 --no-results-md  # smoke test

Arms (each ``--trials`` trials, default 5, with seeds seed, seed+1, ...; the same seeds for
every arm, so trial k of every arm starts from the same initial labeled set and
the same first model):

- random, ll, tpd, mge, ll+clustering, tpd+clustering, mge+clustering (warm
  start, b, m, initial set as the paper's UCMerced protocol, scaled down);
- the paper's ablations on LL+Clustering: b halved at the same label budget,
  and cold start instead of warm start.

Trials run trial-major (trial 0 of every arm, then trial 1, ...), so a study
cut short still has paired trials of every arm. The data is a generated
UCMerced-layout archive (``raydal.data.synth``: the real multi-label
annotation of the images it holds, 21 scene groups of near-duplicates, graded
difficulty) painted with ``raydal.data.synth.ucmerced.CALIBRATED``: its
difficulty was set on random sampling alone (``benchmarks/calibrate_ucmerced.py``,
docs/data.md "Calibration") so that random reaches the paper's random baseline
(~78% micro-F1 at 200 labels), before any other strategy ran on it. Nothing
else is tuned to the paper's result: the settings are the paper's protocol
shrunk to fit.

Output in ``--results`` (default ``benchmarks/results/fidelity-<size>``):
``fidelity_curves.png`` (F1 vs labels, mean and min..max band over trials),
``study.md`` (areas with std, findings table) and ``study.json``; the
findings section of ``benchmarks/RESULTS.md`` is replaced in place.

Verdict rule per finding (``raydal.al.stats.paired_difference``, the rule
``raydal report`` uses too): d = the paired (same seed) difference of areas
under the F1-vs-labels curve, in percentage points, one per trial; its 95 %
confidence interval is mean(d) ± t(0.975, n-1) · std(d, ddof=1) / sqrt(n).
holds: the interval is above 0; does not hold: it is below 0 (the opposite is
seen); otherwise inconclusive. That is a two-sided paired t-test at 5 %. The
protocol asks for at least 5 trials per arm (``MIN_TRIALS``); with fewer, the
tables say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raydal.al.experiment import ensure_shards, run_trial_local, trial_configs  # noqa: E402
from raydal.al.report import area_under_curve, curves, load_runs, plot_curves  # noqa: E402
from raydal.al.state import StateStore  # noqa: E402
from raydal.al.stats import LEVEL, MIN_TRIALS, interval_text, paired_difference  # noqa: E402
from raydal.config import ALConfig  # noqa: E402

#: The paper's UCMerced protocol (b=20, m=3, 40 initial labels, warm start), shrunk.
SIZES = {
    "cpu": dict(
        fake_n=840,
        image_size=32,
        backbone="smallcnn",
        b=20,
        small_b=10,
        m=3,
        initial_labeled=40,
        label_budget=200,
        train=dict(epochs=10, batch_size=16, lr=0.05),
        use_gpu=False,
        torch_threads=1,
    ),
    # smoke-test size (tests/test_benchmarks_smoke.py): seconds, numbers mean nothing
    "small": dict(
        fake_n=105,
        image_size=16,
        backbone="smallcnn",
        b=10,
        small_b=5,
        m=2,
        initial_labeled=10,
        label_budget=30,
        train=dict(epochs=1, batch_size=8, lr=0.05),
        use_gpu=False,
        torch_threads=None,
    ),
    # the full UCMerced image count and the paper's 400-label point; not run yet (no GPU at hand),
    # so its time is an estimate: ~600 trainings of a ResNet-18 at 64 px, use --jobs on a many-core box
    "gpu": dict(
        fake_n=2100,
        image_size=64,
        backbone="resnet18",
        b=20,
        small_b=10,
        m=3,
        initial_labeled=40,
        label_budget=400,
        train=dict(epochs=20, batch_size=20, lr=0.025),
        use_gpu=True,
        torch_threads=2,
    ),
}
#: The paper's metrics (the report also has macro_f1_present; the study keeps to the paper's two).
METRICS = ("micro_f1", "macro_f1")
STRATEGIES = ("random", "ll", "tpd", "mge", "ll+clustering", "tpd+clustering", "mge+clustering")
ABLATION = "ll+clustering"  # the paper's b and warm/cold figures use LL+Clustering


def arms(size: dict) -> dict[str, dict]:
    """Arm name -> ALConfig overrides."""
    out = {s: {"strategy": s} for s in STRATEGIES}
    out[f"{ABLATION} b={size['small_b']}"] = {"strategy": ABLATION, "b": size["small_b"]}
    out[f"{ABLATION} cold"] = {"strategy": ABLATION, "warm_start": False}
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def base_config(size: dict, runs_dir: Path, shards: Path, seed: int) -> ALConfig:
    return ALConfig(
        dataset="ucmerced",
        shards_dir=str(shards),
        state_dir=str(runs_dir),
        strategy="random",
        b=size["b"],
        m=size["m"],
        initial_labeled=size["initial_labeled"],
        iterations=None,
        label_budget=size["label_budget"],
        seed=seed,
        backbone=size["backbone"],
        warm_start=True,
        train=dict(size["train"]),
        executor="local",
        use_gpu=size["use_gpu"],
    )


def run_study(size_name: str, runs_dir: Path, trials: int, seed: int, jobs: int = 1) -> None:
    """Run every unfinished trial, trial-major; ``jobs`` > 1 runs that many trials at once in
    separate processes (a GPU box with many cores)."""
    size = SIZES[size_name]
    make_archive(runs_dir, size)
    shards = ensure_shards("ucmerced", runs_dir / "shards", None, size["image_size"], size["fake_n"], seed=0)
    base = base_config(size, runs_dir, shards, seed)
    plan = {
        name: trial_configs(dataclasses.replace(base, state_dir=str(runs_dir / _slug(name)), **over), trials)
        for name, over in arms(size).items()
    }
    todo = []
    for k in range(trials):
        for name, configs in plan.items():
            store = StateStore(configs[k].state_dir)
            if not (store.has_state() and store.load().phase == "done"):
                todo.append((f"{name} trial {k}", configs[k].to_dict(), size["torch_threads"]))
    if jobs == 1:
        for item in todo:
            _run_one(*item)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        for future in [pool.submit(_run_one, *item) for item in todo]:
            future.result()


#: What the study's runs dir records about the archive it generated (settings and size).
ARCHIVE_RECORD = "archive.json"


def make_archive(runs_dir: Path, size: dict) -> Path:
    """The study's generated archive in ``runs_dir/shards-archive``: made with the calibrated
    settings (``CALIBRATED``) when absent, else checked to be the one they make."""
    from raydal.data.synth import synthesize
    from raydal.data.synth.ucmerced import CALIBRATED

    archive = runs_dir / "shards-archive"
    record = {"dataset": "ucmerced", "n": size["fake_n"], "size": size["image_size"], "seed": 0} | CALIBRATED
    if archive.exists():
        _check_archive(archive, size["fake_n"])
        kept = runs_dir / ARCHIVE_RECORD
        found = json.loads(kept.read_text()) if kept.exists() else None
        if found != record:
            raise SystemExit(
                f"{archive} was generated with {found or 'the default difficulty (no ' + ARCHIVE_RECORD + ')'}, "
                f"not the calibrated settings {record}: its trials would be reported as the calibrated study's. "
                f"Fix: delete {runs_dir} or pass --runs NEW_DIR."
            )
        return archive
    runs_dir.mkdir(parents=True, exist_ok=True)
    synthesize("ucmerced", archive, n=size["fake_n"], size=size["image_size"], seed=0, **CALIBRATED)
    (runs_dir / ARCHIVE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return archive


def _check_archive(archive: Path, n: int) -> None:
    """Refuse a runs dir whose generated archive has other labels than the generator now writes
    (one from before the archive took the real UC Merced annotation): its finished trials would be
    reported as if they were new."""
    from raydal.data.synth.ucmerced import real_labels, real_names

    label_file = archive / "LandUse_Multilabeled.txt"
    if not label_file.exists():
        return
    names, labels = real_labels()
    expected = {name: labels[names.index(name)].tolist() for name in real_names(n)}
    rows = [line.split("\t") for line in label_file.read_text().splitlines()[1:] if line.strip()]
    if {r[0]: [int(v) for v in r[1:]] for r in rows} != expected:
        raise SystemExit(
            f"{archive} holds a generated archive whose labels are not the real UC Merced annotation "
            f"(made by an older raydal). Fix: delete {archive.parent} or pass --runs NEW_DIR."
        )


def _run_one(label: str, config: dict, torch_threads: int | None) -> None:
    """One trial in this process (a pool worker when --jobs > 1)."""
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    cfg = ALConfig.from_dict(config)
    t0 = time.perf_counter()
    print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {label} (seed {cfg.seed})", flush=True)
    summary = run_trial_local(cfg)
    last = summary["curve"][-1]
    print(
        f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {label}: {last['n_labeled']} labels, "
        f"micro-F1 {100 * last['micro_f1']:.1f}, macro-F1 {100 * last['macro_f1']:.1f} "
        f"({time.perf_counter() - t0:.0f}s)",
        flush=True,
    )


# -- analysis -------------------------------------------------------------------
def trial_areas(runs_dir: Path, size: dict) -> dict[str, dict]:
    """Arm -> {metric: {"seeds", "areas" [trials], "x", "y" [trials, K]}} over finished trials."""
    out: dict[str, dict] = {}
    for name in arms(size):
        arm = runs_dir / _slug(name)
        dirs = sorted(str(p.parent) for p in arm.glob("trial-*/state.json"))
        dirs = dirs or ([str(arm)] if (arm / "state.json").exists() else [])  # --trials 1: no trial-k folders
        runs = [r for r in load_runs(dirs) if r["history"] and _done(r)] if dirs else []
        for r in runs:
            r["group"] = name
        if not runs:
            continue
        out[name] = {}
        for metric in METRICS:
            x, y, seeds = curves(runs, metric)[name]
            out[name][metric] = {
                "seeds": seeds,
                "x": x,
                "y": y,
                "areas": np.array([area_under_curve(x, row) for row in y]),
            }
    return out


def _done(run: dict) -> bool:
    return StateStore(run["state_dir"]).load().phase == "done"


def paired(a: dict, b: dict) -> np.ndarray:
    """Per-seed differences of areas a - b, percentage points."""
    common = [s for s in a["seeds"] if s in b["seeds"]]
    return np.array([100 * (a["areas"][a["seeds"].index(s)] - b["areas"][b["seeds"].index(s)]) for s in common])


def findings(areas: dict, size: dict) -> list[dict]:
    """The paper's claims (UCMerced, warm start) as paired comparisons of arms."""
    small = f"{ABLATION} b={size['small_b']}"
    checks = []
    for s in ("ll", "tpd", "mge"):
        for metric in METRICS:
            checks.append(
                (
                    f"{s.upper()}+Clustering beats random ({metric.replace('_', ' ')})",
                    f"{s}+clustering",
                    "random",
                    metric,
                )
            )
    for s in ("ll", "tpd", "mge"):
        checks.append(
            (
                f"{s.upper()}: uncertainty + clustering beats uncertainty alone (micro f1)",
                f"{s}+clustering",
                s,
                "micro_f1",
            )
        )
    for s in ("ll", "tpd", "mge"):
        checks.append(
            (f"{s.upper()} alone beats random (micro f1; implied by the paper's Fig. 2)", s, "random", "micro_f1")
        )
    checks.append(
        ("MGE+Clustering slightly above LL+Clustering (micro f1)", "mge+clustering", "ll+clustering", "micro_f1")
    )
    checks.append(
        ("MGE+Clustering slightly above TPD+Clustering (micro f1)", "mge+clustering", "tpd+clustering", "micro_f1")
    )
    checks.append(
        (
            f"smaller b ({size['small_b']} vs {size['b']}) gives higher F1 at the same labels, "
            "LL+Clustering (micro f1)",
            small,
            ABLATION,
            "micro_f1",
        )
    )
    checks.append(
        ("warm start beats cold start on UCMerced, LL+Clustering (micro f1)", ABLATION, f"{ABLATION} cold", "micro_f1")
    )
    out = []
    for claim, a, b, metric in checks:
        if a not in areas or b not in areas:
            out.append({"claim": claim, "a": a, "b": b, "metric": metric, "verdict": "not run", "d": []})
            continue
        d = paired(areas[a][metric], areas[b][metric])
        test = paired_difference(d).as_dict()
        out.append({"claim": claim, "a": a, "b": b, "metric": metric, "d": d.round(3).tolist()} | test)
    return out


def trial_noise(areas: dict) -> dict[str, dict]:
    """Per metric, how much a query function's paired area difference to random varies between trials:
    ``{"sd": points, "comparisons": k, "df": degrees of freedom}``, the within-arm variances pooled
    over the six query-function arms (not the ablations). A single paired run cannot separate
    effects below this (``raydal.al.experiment.SINGLE_RUN_NOISE`` quotes it)."""
    out: dict[str, dict] = {}
    if "random" not in areas:
        return out
    for metric in METRICS:
        ds = [paired(areas[a][metric], areas["random"][metric]) for a in STRATEGIES[1:] if a in areas]
        ds = [d for d in ds if len(d) > 1]
        if ds:
            df = sum(len(d) - 1 for d in ds)
            sd = float(np.sqrt(sum((len(d) - 1) * d.var(ddof=1) for d in ds) / df))
            out[metric] = {"sd": round(sd, 3), "comparisons": len(ds), "df": df}
    return out


def final_gain(areas: dict, a: str, b: str, metric: str) -> list[float]:
    """Paired F1 differences at the last label count both reach (percentage points)."""
    xa, xb = areas[a][metric]["x"], areas[b][metric]["x"]
    last = max(set(xa.tolist()) & set(xb.tolist()))
    ya = areas[a][metric]["y"][:, list(xa).index(last)]
    yb = areas[b][metric]["y"][:, list(xb).index(last)]
    sa, sb = areas[a][metric]["seeds"], areas[b][metric]["seeds"]
    return [100 * (ya[sa.index(s)] - yb[sb.index(s)]) for s in sa if s in sb]


def write_results(size_name: str, runs_dir: Path, results: Path, command: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raydal.data.synth.ucmerced import CALIBRATED

    size = SIZES[size_name]
    areas = trial_areas(runs_dir, size)
    results.mkdir(parents=True, exist_ok=True)
    main = [s for s in STRATEGIES if s in areas]
    panels = [
        ("micro_f1", main, "query functions vs random"),
        ("macro_f1", main, "query functions vs random"),
        ("micro_f1", [ABLATION, f"{ABLATION} b={size['small_b']}"], "b at the same label budget"),
        ("micro_f1", [ABLATION, f"{ABLATION} cold"], "warm vs cold start"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    for ax, (metric, names, title) in zip(axes.ravel(), panels):
        groups = {
            n: (areas[n][metric]["x"], areas[n][metric]["y"], areas[n][metric]["seeds"]) for n in names if n in areas
        }
        plot_curves(ax, groups, metric)
        ax.set_title(f"{title} ({metric.replace('_', ' ')})")
    fig.suptitle(
        f"raydal fidelity study ({size_name} size): generated UCMerced archive, "
        f"{size['backbone']} {size['image_size']}px, mean and min..max over trials"
    )
    fig.tight_layout()
    fig.savefig(results / "fidelity_curves.png", dpi=110)
    plt.close(fig)

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    rows = findings(areas, size)
    noise = trial_noise(areas)
    n_trials = {n: len(a["micro_f1"]["seeds"]) for n, a in areas.items()}
    few = min(n_trials.values(), default=0) < MIN_TRIALS
    record = runs_dir / ARCHIVE_RECORD
    painted = (
        "painted with "
        + ", ".join(f"{k} {v}" for k, v in json.loads(record.read_text()).items() if k in CALIBRATED)
        + ", calibrated on random only (docs/data.md)"
        if record.exists()
        else "the generator's default difficulty, not calibrated"
    )
    lines = [
        f"<!-- fidelity-study:{size_name} -->",
        f"## Fidelity study, {size_name} size (`benchmarks/fidelity_study.py`)",
        "",
        f"`{command}`, finished {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"on commit `{commit}`{' (+ uncommitted changes)' if dirty else ''}.",
        "",
        f"Generated UCMerced archive ({size['fake_n']} images, {size['image_size']} px, {painted}; split "
        f"25/25/50 -> pool {size['fake_n'] // 2}), {size['backbone']}, {size['train']['epochs']} epochs, batch "
        f"{size['train']['batch_size']}, lr {size['train']['lr']}, b={size['b']}, m={size['m']}, "
        f"{size['initial_labeled']} initial labels, label budget {size['label_budget']}, warm start unless "
        f"said, local executor. Trials per arm: "
        + ", ".join(f"{n} {k}" for n, k in n_trials.items())
        + " (same seeds for every arm).",
        "",
        "### Area under the F1-vs-labels curve (mean F1 over the label range, %; mean ± std over trials)",
        "",
        "| arm | trials | micro F1 area | macro F1 area | micro F1 at the last count | macro F1 at the last count |",
        "|---|---|---|---|---|---|",
    ]
    for name, a in areas.items():
        cells = []
        for metric in METRICS:
            cells.append(
                f"{100 * a[metric]['areas'].mean():.2f} ± {100 * a[metric]['areas'].std(ddof=1 if len(a[metric]['areas']) > 1 else 0):.2f}"
            )
        for metric in METRICS:
            last = a[metric]["y"][:, -1]
            cells.append(
                f"{100 * last.mean():.2f} ± {100 * last.std(ddof=1 if len(last) > 1 else 0):.2f} ({a[metric]['x'][-1]})"
            )
        lines.append(f"| {name} | {n_trials[name]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Paper finding -> verdict",
        "",
        f"d: paired (same seed) difference of areas, percentage points, one per trial; mean d with its {LEVEL} "
        "confidence interval (t quantile, n - 1 degrees of freedom). holds: the interval is above 0; does not "
        "hold: below 0 (the opposite is seen); else inconclusive. A two-sided paired t-test at 5% "
        "(`raydal.al.stats`)."
        + (f" **Fewer than the {MIN_TRIALS} trials per arm the protocol asks for.**" if few else ""),
        "",
        "| paper finding | A − B | d per trial | mean d (95% CI) | t, p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["d"]:
            lines.append(f"| {r['claim']} | {r['a']} − {r['b']} | – | – | – | **{r['verdict']}** |")
            continue
        t = "–" if r["t"] is None else f"t = {r['t']:+.2f}, p = {r['p']:.3f}"
        lines.append(
            f"| {r['claim']} | {r['a']} − {r['b']} | {', '.join(f'{v:+.2f}' for v in r['d'])} | "
            f"{interval_text(r['mean'], r['ci_low'], r['ci_high'], r['n'], scale=1)} | {t} "
            f"| **{r['verdict']}** |"
        )
    if noise:
        lines += [
            "",
            "Trial-to-trial noise: the standard deviation of a query function's paired area difference "
            "to random between trials, pooled over the six query functions: "
            + "; ".join(
                f"{m.replace('_', ' ')} {v['sd']:.2f} points ({v['comparisons']} arms, {v['df']} df)"
                for m, v in noise.items()
            )
            + ". A single paired run cannot separate effects below this (the demo quotes it: "
            "`raydal.al.experiment.SINGLE_RUN_NOISE`).",
        ]
    if "random" in areas:
        lines += [
            "",
            "Gain over random at the last label count (paired, percentage points; the paper quotes "
            "MGE+Clustering +2 at 200 labels, +1 at 400):",
            "",
        ]
        for s in ("ll+clustering", "tpd+clustering", "mge+clustering"):
            if s in areas:
                g = final_gain(areas, s, "random", "micro_f1")
                lines.append(f"- {s}: micro F1 {', '.join(f'{v:+.2f}' for v in g)} (mean {np.mean(g):+.2f})")
    lines += [
        "",
        f"![fidelity curves](results/{results.name}/fidelity_curves.png)",
        "",
        f"<!-- /fidelity-study:{size_name} -->",
    ]
    text = "\n".join(lines) + "\n"
    (results / "study.md").write_text(text.replace(f"results/{results.name}/", ""))
    (results / "study.json").write_text(
        json.dumps(
            {
                "size": size_name,
                "settings": size,
                "commit": commit,
                "command": command,
                "findings": rows,
                "trial_noise": noise,
                "areas": {
                    n: {
                        m: {
                            "seeds": a[m]["seeds"],
                            "areas": a[m]["areas"].round(6).tolist(),
                            "labels": a[m]["x"].tolist(),
                            "mean_curve": a[m]["y"].mean(0).round(6).tolist(),
                        }
                        for m in METRICS
                    }
                    for n, a in areas.items()
                },
            },
            indent=1,
            default=str,
        )
    )
    return text


def update_results_md(text: str, size_name: str, path: Path = ROOT / "benchmarks" / "RESULTS.md") -> None:
    """Replace (or append) this size's section of RESULTS.md."""
    old = path.read_text()
    pattern = re.compile(rf"<!-- fidelity-study:{size_name} -->.*?<!-- /fidelity-study:{size_name} -->\n?", re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument(
        "--trials",
        type=int,
        default=MIN_TRIALS,
        help=f"trials per arm (default {MIN_TRIALS}, the least the verdict protocol asks for)",
    )
    p.add_argument("--seed", type=int, default=0, help="first trial's seed")
    p.add_argument("--runs", type=Path, default=None, help="state dirs (default runs/fidelity-SIZE)")
    p.add_argument("--results", type=Path, default=None, help="default benchmarks/results/fidelity-SIZE")
    p.add_argument("--jobs", type=int, default=1, help="trials run at once, each in its own process")
    p.add_argument("--report-only", action="store_true", help="only write tables and figure from finished trials")
    p.add_argument(
        "--no-results-md", dest="results_md", action="store_false", help="do not touch benchmarks/RESULTS.md"
    )
    args = p.parse_args(argv)
    runs_dir = args.runs or ROOT / "runs" / f"fidelity-{args.size}"
    results = args.results or ROOT / "benchmarks" / "results" / f"fidelity-{args.size}"
    if args.trials < MIN_TRIALS:
        print(
            f"note: {args.trials} trials per arm, fewer than the {MIN_TRIALS} the protocol asks for; "
            "verdicts will mostly be inconclusive",
            file=sys.stderr,
        )
    if not args.report_only:
        run_study(args.size, runs_dir, args.trials, args.seed, args.jobs)
    command = f"python benchmarks/fidelity_study.py --size {args.size} --trials {args.trials}"
    text = write_results(args.size, runs_dir, results, command)
    if args.results_md:
        update_results_md(text, args.size)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
