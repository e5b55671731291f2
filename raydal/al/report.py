"""Reports over finished (or running) state dirs: F1-vs-labels curves, tables, areas, timings.

Runs are grouped by strategy and by any setting that differs between the runs
(b, m, lambda, ... in a sweep); the trials of a group (different seeds) give the
mean and the spread (min..max band) of each curve, as in the paper's figures.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al.state import StateStore
from raydal.constants import F1_CURVES_PNG, REPORT_JSON, REPORT_MD
from raydal.exceptions import StateError

METRICS = ("micro_f1", "macro_f1", "macro_f1_present")
#: What each metric averages over, said in the report.
METRIC_NOTES = {
    "macro_f1": "mean F1 over all classes of the archive; a class absent from the test split counts as 0.",
    "macro_f1_present": "mean F1 over the classes that occur in the test split only.",
}
PHASES = ("train", "eval", "score", "select")


def load_runs(state_dirs: list[str]) -> list[dict[str, Any]]:
    """One record per state dir: strategy, seed, and its curve ``n_labeled -> test metrics``."""
    runs = []
    for d in state_dirs:
        store = StateStore(str(d))
        if not store.has_state():
            raise StateError(f"{d} holds no raydal state (no state.json); pass the --state-dir of a run.")
        state = store.load()
        runs.append({
            "state_dir": str(d),
            "strategy": state.config.get("strategy", "?"),
            "seed": state.config.get("seed"),
            "dataset": state.config.get("dataset"),
            "history": state.history,
            "config": _flat(state.config),
        })
    _label_groups(runs)
    return runs


#: Config fields that never distinguish one curve from another (trials differ in seed).
_NOT_A_SETTING = frozenset({
    "seed", "state_dir", "shards_dir", "executor", "num_workers", "use_gpu", "cpus_per_worker",
    "score_concurrency", "score_batch_size", "storage_path", "iterations", "label_budget", "train.seed",
})


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"lr": x}}`` -> ``{"train.lr": x}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _label_groups(runs: list[dict[str, Any]]) -> None:
    """Name each run's curve: its strategy, plus the settings that differ between the runs
    (e.g. ``b=20`` vs ``b=40`` in a sweep); runs differing only in seed are trials of one curve."""
    keys = sorted({k for r in runs for k in r["config"]} - _NOT_A_SETTING - {"strategy"})
    varying = [k for k in keys if len({repr(r["config"].get(k)) for r in runs}) > 1]
    for run in runs:
        extra = ", ".join(f"{k}={run['config'].get(k)}" for k in varying)
        run["group"] = f"{run['strategy']} ({extra})" if extra else run["strategy"]


def _curves(runs: list[dict[str, Any]], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """strategy -> (x: label counts [K], y: [trials, K] test metric), over counts every trial has."""
    by: dict[str, list[dict[int, float]]] = defaultdict(list)
    for run in runs:
        if _has_test(run):
            by[run["group"]].append({h["n_labeled"]: h["test"][metric] for h in run["history"]
                                     if metric in h["test"]})
    out = {}
    for strategy, trials in by.items():
        xs = sorted(set.intersection(*(set(t) for t in trials))) if trials else []
        if xs:
            out[strategy] = (np.array(xs), np.array([[t[x] for x in xs] for t in trials]))
    return out


def _has_test(run: dict[str, Any]) -> bool:
    """False for a run whose archive has no labeled test images (its metrics are empty)."""
    return any(h["test"].get("n_samples", 1) for h in run["history"])


def area_under_curve(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised trapezoid area of y over x (equals the mean F1 over the label range)."""
    if len(x) < 2:
        return float(y[0]) if len(y) else float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def build_report(state_dirs: list[str], out_dir: str | Path, at: list[int] | None = None) -> dict[str, Any]:
    """Write ``f1_curves.png``, ``report.md`` and ``report.json`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(state_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"runs": [r["state_dir"] for r in runs], "strategies": {}}

    fig, axes = plt.subplots(1, len(METRICS), figsize=(6 * len(METRICS), 4.5))
    for ax, metric in zip(axes, METRICS):
        for strategy, (x, y) in sorted(_curves(runs, metric).items()):
            mean = y.mean(axis=0)
            (line,) = ax.plot(x, 100 * mean, marker="o", ms=3, label=f"{strategy} (n={len(y)})")
            if len(y) > 1:
                ax.fill_between(x, 100 * y.min(axis=0), 100 * y.max(axis=0), alpha=0.2, color=line.get_color())
            entry = summary["strategies"].setdefault(strategy, {"trials": int(len(y))})
            entry[metric] = {
                "labels": x.tolist(),
                "mean": mean.round(6).tolist(),
                "std": y.std(axis=0).round(6).tolist(),
                "auc": round(area_under_curve(x, mean), 6),
            }
        ax.set_xlabel("number of labeled samples")
        ax.set_ylabel(f"test {metric.replace('_', ' ')} (%)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / F1_CURVES_PNG, dpi=120)
    plt.close(fig)

    timings: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for h in run["history"]:
            for phase in PHASES:
                if phase in h.get("seconds", {}):
                    timings[run["group"]][phase].append(h["seconds"][phase])
    for strategy, phases in timings.items():
        summary["strategies"].setdefault(strategy, {})["seconds_per_iteration"] = {
            p: round(float(np.mean(v)), 3) for p, v in phases.items()
        }

    counts = sorted({x for s in summary["strategies"].values() for x in s.get("micro_f1", {}).get("labels", [])})
    at = sorted(at) if at else counts
    lines = ["# raydal active-learning report", "", f"Runs: {len(runs)} state dir(s).", ""]
    no_test = [r["state_dir"] for r in runs if r["history"] and not _has_test(r)]
    if no_test:
        summary["no_test_split"] = no_test
        lines += [f"**No labeled test split** in {', '.join(no_test)}: there is nothing to measure F1 on, so "
                  "these runs have no curve. Fix: give some images labels (a `split` column set to `test` in "
                  "the labels CSV, or `--test-share`) and prepare the archive again.", ""]
    for metric in METRICS:
        lines += [f"## Test {metric.replace('_', ' ')} (%) by number of labeled samples (mean ± std over trials)", ""]
        if metric in METRIC_NOTES:
            lines += [f"`{metric}`: {METRIC_NOTES[metric]}", ""]
        lines += ["| strategy | trials | " + " | ".join(str(a) for a in at) + " | area |",
                  "|---|---|" + "---|" * len(at) + "---|"]
        for strategy, entry in sorted(summary["strategies"].items()):
            if metric not in entry:
                continue
            m = dict(zip(entry[metric]["labels"], zip(entry[metric]["mean"], entry[metric]["std"])))
            cells = [f"{100 * m[a][0]:.2f} ± {100 * m[a][1]:.2f}" if a in m else "–" for a in at]
            lines.append(f"| {strategy} | {entry['trials']} | " + " | ".join(cells)
                         + f" | {100 * entry[metric]['auc']:.2f} |")
        lines.append("")
    lines += ["## Seconds per iteration (mean)", "", "| strategy | " + " | ".join(PHASES) + " |",
              "|---|" + "---|" * len(PHASES)]
    for strategy, entry in sorted(summary["strategies"].items()):
        t = entry.get("seconds_per_iteration", {})
        lines.append(f"| {strategy} | " + " | ".join(f"{t[p]:.2f}" if p in t else "–" for p in PHASES) + " |")
    lines += ["", "![F1 curves](f1_curves.png)", ""]
    (out / REPORT_MD).write_text("\n".join(lines))
    import json

    (out / REPORT_JSON).write_text(json.dumps(summary, indent=1))
    summary["out_dir"] = str(out)
    return summary
