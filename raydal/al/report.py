"""Reports over finished (or running) state dirs: F1-vs-labels curves, tables, areas, timings.

Runs are grouped by strategy and by any setting that differs between the runs
(b, m, lambda, ... in a sweep); the trials of a group (different seeds) give the
mean and the spread (min..max band) of each curve, as in the paper's figures.
Every group is drawn on the same axes; when a random-sampling run is among them,
each group's area is also given minus random's (paired by seed where the seeds
match), which is the question active learning has to answer: with its 95 %
interval and a verdict by a two-sided paired t-test at 5 % (``raydal.al.stats``).

Areas are compared on one label grid (:func:`common_grid`): the range every curve
covers, each curve interpolated linearly onto it, so that two curves measured at
different label counts are never compared over different ranges.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al import stopping
from raydal.al.state import StateStore
from raydal.al.stats import LEVEL, interval_text, paired_difference, verdict_text
from raydal.config import setting_kind
from raydal.constants import F1_CURVES_PNG, REPORT_JSON, REPORT_MD
from raydal.exceptions import RaydalError, StateError
from raydal.settings import IDENTITY, RESULT

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
        runs.append(
            {
                "state_dir": str(d),
                "strategy": state.config.get("strategy", "?"),
                "seed": state.config.get("seed"),
                "dataset": state.config.get("dataset"),
                "history": state.history,
                "config": _flat(state.config),
            }
        )
    _label_groups(runs)
    return runs


#: What tells the trials of one curve apart: the seed (each trial's initial labeled set).
TRIAL_KEYS = ("seed", "train.seed")


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
    """Name each run's curve: its strategy, plus the result and identity settings that differ
    between the runs (e.g. ``b=20`` vs ``b=40`` in a sweep; ``raydal.settings`` kinds); runs
    differing only in seed are trials of one curve, and execution settings never split one."""
    keys = sorted(
        k
        for k in {k for r in runs for k in r["config"]} - set(TRIAL_KEYS) - {"strategy"}
        if setting_kind(k) in (RESULT, IDENTITY)
    )
    varying = [k for k in keys if len({repr(r["config"].get(k)) for r in runs}) > 1]
    for run in runs:
        extra = ", ".join(f"{k}={run['config'].get(k)}" for k in varying)
        run["group"] = f"{run['strategy']} ({extra})" if extra else run["strategy"]


def curves(runs: list[dict[str, Any]], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """group -> (x: label counts [K], y: [trials, K] test metric, the trials' seeds), over the
    counts every trial of the group has."""
    by: dict[str, list[tuple[Any, dict[int, float]]]] = defaultdict(list)
    for run in runs:
        if _has_test(run):
            points = {h["n_labeled"]: h["test"][metric] for h in run["history"] if metric in h.get("test", {})}
            by[run["group"]].append((run["seed"], points))
    out = {}
    for group, trials in by.items():
        xs = sorted(set.intersection(*(set(t) for _, t in trials))) if trials else []
        if xs:
            out[group] = (np.array(xs), np.array([[t[x] for x in xs] for _, t in trials]), [s for s, _ in trials])
    return out


def _has_test(run: dict[str, Any]) -> bool:
    """False for a run whose archive has no labeled test images (its metrics are empty)."""
    return any(h["test"].get("n_samples", 1) for h in run["history"])


def baseline_of(group: str, groups: list[str], baseline: str = "random") -> str | None:
    """The ``baseline`` group that ``group`` is compared with: the one with the same other
    settings (``"random (b=10)"`` for ``"ll (b=10)"``), else the only baseline group, else None."""
    strategy, _, extra = group.partition(" (")
    if strategy == baseline:
        return None
    same = f"{baseline} ({extra}" if extra else baseline
    if same in groups:
        return same
    plain = [g for g in groups if g.partition(" (")[0] == baseline]
    return plain[0] if len(plain) == 1 else None


def common_grid(xs: list[np.ndarray]) -> np.ndarray | None:
    """The label counts curves are compared on: every count of every curve inside the range
    all of them cover, plus that range's ends. Curves of one point (nothing to integrate
    yet) do not narrow it. None when there is no common range."""
    spans = [np.asarray(x) for x in xs if len(x) >= 2]
    if not spans:
        return None
    lo, hi = max(x[0] for x in spans), min(x[-1] for x in spans)
    if lo > hi:
        return None
    return np.unique(np.concatenate([[lo, hi], *(x[(x >= lo) & (x <= hi)] for x in spans)]))


def areas_on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """[trials] normalised areas (mean F1) of the curves ``y`` [trials, K] at label counts ``x``
    [K] over ``grid``, each interpolated linearly onto it (``grid`` inside ``x``'s range)."""
    return np.array([area_under_curve(grid, np.interp(grid, x, row)) for row in np.atleast_2d(y)])


def area_differences(
    x: np.ndarray,
    y: np.ndarray,
    seeds: list,
    x0: np.ndarray,
    y0: np.ndarray,
    seeds0: list,
    grid: np.ndarray | None = None,
) -> dict[str, Any]:
    """Area of curves (x, y [trials, K]) minus the baseline's (x0, y0), in F1 units.

    Both are taken on ``grid`` (default: :func:`common_grid` of the two), each curve
    interpolated onto it, so both areas cover the same label range (``range``).
    Trials with the same seed (same initial labeled set) are paired: ``mean`` and
    ``std`` are over the paired differences, and ``ci_low``, ``ci_high``, ``t``,
    ``p`` and ``verdict`` ("holds": ahead of the baseline, "does not hold":
    behind it, "inconclusive") come from :func:`raydal.al.stats.paired_difference`
    (None where there is no interval: one pair). Without common seeds, ``mean``
    is the difference of the mean areas, ``std`` and the interval None, and the
    verdict "inconclusive".

    Raises:
        ValueError: the curves share no label range.
    """
    grid = common_grid([x, x0]) if grid is None else grid
    if grid is None:
        raise ValueError(f"The curves cover no common label range ({x[0]}..{x[-1]} vs {x0[0]}..{x0[-1]}).")
    a, a0 = areas_on_grid(x, y, grid), areas_on_grid(x0, y0, grid)
    common = [s for s in seeds if s is not None and s in seeds0]
    span = [int(grid[0]), int(grid[-1])]
    if common:
        d = np.array([a[seeds.index(s)] - a0[seeds0.index(s)] for s in common])
        test = paired_difference(d).as_dict()
        return {
            "mean": float(d.mean()),
            "std": float(d.std()),
            "paired": len(common),
            "range": span,
            "ci_low": test["ci_low"],
            "ci_high": test["ci_high"],
            "t": test["t"],
            "p": test["p"],
            "verdict": test["verdict"],
        }
    return {
        "mean": float(a.mean() - a0.mean()),
        "std": None,
        "paired": 0,
        "range": span,
        "ci_low": None,
        "ci_high": None,
        "t": None,
        "p": None,
        "verdict": "inconclusive",
    }


def difference_text(d: dict[str, Any], baseline: str) -> str:
    """An ``area_differences`` entry in words, percentage points of F1:
    ``+1.23 (95% CI -0.40..+2.86, 5 pairs): inconclusive at 5%``."""
    text = interval_text(d["mean"], d["ci_low"], d["ci_high"], d["paired"])
    return text if d["paired"] < 2 else f"{text}: {verdict_text(d['verdict'], baseline)}"


def plot_curves(
    ax, groups: dict[str, tuple[np.ndarray, np.ndarray, list]], metric: str, baseline: str = "random"
) -> None:
    """Each group's mean curve (in %) with its trials' min..max band, on one matplotlib axis
    (the baseline's dashed)."""
    for group, (x, y, _) in sorted(groups.items()):
        (line,) = ax.plot(
            x,
            100 * y.mean(axis=0),
            marker="o",
            ms=3,
            label=f"{group} (n={len(y)})",
            ls="--" if group.partition(" (")[0] == baseline else "-",
        )
        if len(y) > 1:
            ax.fill_between(x, 100 * y.min(axis=0), 100 * y.max(axis=0), alpha=0.2, color=line.get_color())
    ax.set_xlabel("number of labeled samples")
    ax.set_ylabel(f"test {metric.replace('_', ' ')} (%)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)


def area_under_curve(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised trapezoid area of y over x (equals the mean F1 over the label range)."""
    if len(x) < 2:
        return float(y[0]) if len(y) else float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def stopping_section(runs: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The report's "When to stop" lines, one row per run (``raydal.al.stopping.advice``);
    ``summary["stopping"]``: state dir -> kappas, stable, slope (F1 per label, 95% CI)."""
    lines = [
        "## When to stop",
        "",
        (
            f"Stabilizing predictions (Bloodgood & Vijay-Shanker 2009): Cohen's κ between consecutive models' "
            f"decisions (class predicted at the run's F1 threshold) on a fixed seeded stop set of up to "
            f"{stopping.STOP_SET_SIZE} unlabeled pool images, pooled over classes and images; stable when the "
            f"mean of the last {stopping.WINDOW} κ values is >= {stopping.KAPPA_STABLE}. Slope: least squares "
            f"of test micro-F1 on labeled images over the last {stopping.WINDOW} rounds, in percentage points "
            f"per 100 labels, with its {LEVEL} interval. Advice only; `--stop-when stable` makes the rule end a "
            "run. κ needs the pool probabilities that a scoring strategy saves at each query: a random run "
            "has none (its slope is the advice)."
        ),
        "",
        f"| run | strategy | last κ | stable | F1 slope per 100 labels ({LEVEL} CI) |",
        "|---|---|---|---|---|",
    ]
    summary["stopping"] = {}
    for run in runs:
        adv = stopping.advice(run["history"], run["config"].get("stop_when"))
        slope = adv["slope"]
        summary["stopping"][run["state_dir"]] = {
            "kappas": adv["kappas"],
            "stable": adv["stable"],
            "text": adv["text"],
            "slope": None
            if slope is None
            else {
                "per_label": slope.per_label,
                "ci_low": slope.ci_low,
                "ci_high": slope.ci_high,
                "labels": list(slope.labels),
            },
        }
        ks = ", ".join(f"{k:.3f}" for k in adv["kappas"][-stopping.WINDOW :]) or "–"
        cell = "–" if slope is None else stopping.slope_text(slope)
        lines.append(f"| {run['state_dir']} | {run['strategy']} | {ks} | {'yes' if adv['stable'] else 'no'} | {cell} |")
    return lines + [""]


#: Over-represented classes of a picked batch the report names per query.
TOP_CLASSES = 3


def _class_names(run: dict[str, Any], n: int) -> list[str]:
    """The run's class names from its shards' manifest; ``class i`` where that cannot be read."""
    from raydal.data.shards import load_manifest
    from raydal.exceptions import RaydalError

    try:
        names = list(load_manifest(run["config"].get("shards_dir") or "").classes)
    except (RaydalError, OSError, ValueError):
        names = []
    return names if len(names) == n else [f"class {i}" for i in range(n)]


def _rho(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def over_picked(diag: dict[str, Any], names: list[str], top: int = TOP_CLASSES) -> list[dict[str, Any]]:
    """The ``top`` classes whose share of the picked batch most exceeds their share of the pool
    (shares of images predicted to carry the class), most over-represented first."""
    picked, pool = np.asarray(diag["label_counts"]["picked"]), np.asarray(diag["label_counts"]["pool"])
    if not diag["n_picked"] or not diag["n_scored"]:
        return []
    share, share0 = picked / diag["n_picked"], pool / diag["n_scored"]
    order = [int(i) for i in np.argsort(share0 - share, kind="stable") if share[i] > share0[i]][:top]
    return [{"class": names[i], "picked": float(share[i]), "pool": float(share0[i])} for i in order]


def diagnostics_section(runs: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The report's "Query diagnostics" lines (``raydal.query.diagnostics``, beyond the paper): per
    group the mean over its recorded queries, then per run and query; ``summary["query_diagnostics"]``:
    state dir -> one entry per query (``recorded`` False for a run from before the diagnostics)."""
    from raydal.query import get_strategy
    from raydal.query.diagnostics import HISTORY_KEY

    summary["query_diagnostics"] = {}
    per_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)  # queries of a scoring strategy without diagnostics
    rows: list[str] = []
    for run in runs:
        try:
            scores = get_strategy(run["strategy"]).requires_scoring
        except RaydalError:
            scores = True
        entries = []
        queried = [h for h in run["history"] if "select" in h.get("seconds", {})]  # the last model has no query
        if queried and not any(HISTORY_KEY in h for h in queried):
            why = "not recorded (a run from before the query diagnostics)" if scores else "not scored (random)"
            summary["query_diagnostics"][run["state_dir"]] = [
                {"iteration": h["iteration"], "n_labeled": h["n_labeled"], "recorded": False} for h in queried
            ]
            rows.append(f"| {run['state_dir']} | all {len(queried)} | – | {why} | | | |")
            if scores:
                missing[run["group"]] += len(queried)
            continue
        for h in queried:
            diag = h.get(HISTORY_KEY)
            entry = {"iteration": h["iteration"], "n_labeled": h["n_labeled"], "recorded": diag is not None}
            if diag is None:
                entries.append(entry)
                missing[run["group"]] += 1
                rows.append(f"| {run['state_dir']} | {h['iteration']} | {h['n_labeled']} | not recorded | | | |")
                continue
            names = _class_names(run, len(diag["label_counts"]["pool"]))
            entry.update(diag, over_picked=over_picked(diag, names))
            entries.append(entry)
            per_group[run["group"]].append(entry)
            lpi = diag["labels_per_image"]
            labels = "–" if lpi["picked"] is None else f"{lpi['picked']:.2f} vs {lpi['pool']:.2f}"
            classes = ", ".join(
                f"{c['class']} {100 * c['picked']:.0f}% vs {100 * c['pool']:.0f}%" for c in entry["over_picked"]
            )
            rows.append(
                f"| {run['state_dir']} | {h['iteration']} | {h['n_labeled']} | {_rho(diag['spearman_feature_norm'])} "
                f"| {_rho(diag['spearman_n_labels'])} | {labels} | {classes or '–'} |"
            )
        summary["query_diagnostics"][run["state_dir"]] = entries
    if not rows:
        return []
    lines = [
        "## Query diagnostics (beyond the paper)",
        "",
        (
            "What each query ranked by, over the scored unlabeled pool: Spearman's ρ of the strategy's "
            "uncertainty with the feature norm ‖h‖ (penultimate features) and with the number of predicted "
            "labels (p >= the run's threshold); predicted labels per image of the picked batch vs the pool; "
            f"and the {TOP_CLASSES} classes most over-represented in the picked batch (share of picked images "
            "predicted to carry the class vs the pool's share). A ρ near 1 says the uncertainty mostly "
            "measures that quantity (docs/query.md, switches beyond the paper)."
        ),
        "",
        "| strategy | queries | mean ρ(u, ‖h‖) | mean ρ(u, #labels) | labels/image picked vs pool (mean) |",
        "|---|---|---|---|---|",
    ]
    for group in sorted(set(per_group) | set(missing)):
        entries = per_group.get(group, [])
        if not entries:
            lines.append(f"| {group} | {missing[group]} | not recorded | not recorded | not recorded |")
            continue
        cells = []
        for key in ("spearman_feature_norm", "spearman_n_labels"):
            vals = [e[key] for e in entries if e[key] is not None]
            cells.append(_rho(float(np.mean(vals)) if vals else None))
        lpi = [e["labels_per_image"] for e in entries if e["labels_per_image"]["picked"] is not None]
        picked_pool = (
            f"{np.mean([x['picked'] for x in lpi]):.2f} vs {np.mean([x['pool'] for x in lpi]):.2f}" if lpi else "–"
        )
        also = f" (+{missing[group]} not recorded)" if missing.get(group) else ""
        lines.append(f"| {group} | {len(entries)}{also} | {cells[0]} | {cells[1]} | {picked_pool} |")
    lines += [
        "",
        "<details><summary>Per query</summary>",
        "",
        "| run | iteration | labeled | ρ(u, ‖h‖) | ρ(u, #labels) | labels/image picked vs pool "
        "| most over-picked classes (picked vs pool) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "</details>",
        "",
    ]
    return lines


def build_report(
    state_dirs: list[str], out_dir: str | Path, at: list[int] | None = None, baseline: str = "random"
) -> dict[str, Any]:
    """Write ``f1_curves.png``, ``report.md`` and ``report.json`` into ``out_dir``.

    Every group's ``auc`` per metric is its mean curve's area on the metric's
    :func:`common_grid` of all groups (``area_range[metric]``: its label range), None
    for a one-point curve. When runs of the ``baseline`` strategy are among them, every
    other group's entry gets ``auc_minus_baseline`` per metric (:func:`area_differences`,
    on the same grid).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(state_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"runs": [r["state_dir"] for r in runs], "strategies": {}, "area_range": {}}

    fig, axes = plt.subplots(1, len(METRICS), figsize=(6 * len(METRICS), 4.5))
    for ax, metric in zip(axes, METRICS):
        groups = curves(runs, metric)
        plot_curves(ax, groups, metric, baseline)
        grid = common_grid([x for x, _, _ in groups.values()])
        if grid is not None:
            summary["area_range"][metric] = [int(grid[0]), int(grid[-1])]
        for strategy, (x, y, _) in groups.items():
            mean = y.mean(axis=0)
            entry = summary["strategies"].setdefault(strategy, {"trials": int(len(y))})
            on_grid = grid is not None and len(x) >= 2
            entry[metric] = {
                "labels": x.tolist(),
                "mean": mean.round(6).tolist(),
                "std": y.std(axis=0).round(6).tolist(),
                "auc": round(float(areas_on_grid(x, mean, grid)[0]), 6) if on_grid else None,
            }
            base = baseline_of(strategy, list(groups), baseline)
            if base is not None and on_grid and len(groups[base][0]) >= 2:
                entry[metric]["auc_minus_baseline"] = area_differences(*groups[strategy], *groups[base], grid=grid) | {
                    "baseline": base
                }
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
        lines += [
            f"**No labeled test split** in {', '.join(no_test)}: there is nothing to measure F1 on, so "
            "these runs have no curve. Fix: give some images labels (a `split` column set to `test` in "
            "the labels CSV, or `--test-share`) and prepare the archive again.",
            "",
        ]
    for metric in METRICS:
        lines += [f"## Test {metric.replace('_', ' ')} (%) by number of labeled samples (mean ± std over trials)", ""]
        if metric in METRIC_NOTES:
            lines += [f"`{metric}`: {METRIC_NOTES[metric]}", ""]
        span = summary["area_range"].get(metric)
        area = f"area {span[0]}..{span[1]}" if span else "area"
        lines += [
            "| strategy | trials | " + " | ".join(str(a) for a in at) + f" | {area} |",
            "|---|---|" + "---|" * len(at) + "---|",
        ]
        for strategy, entry in sorted(summary["strategies"].items()):
            if metric not in entry:
                continue
            m = dict(zip(entry[metric]["labels"], zip(entry[metric]["mean"], entry[metric]["std"])))
            cells = [f"{100 * m[a][0]:.2f} ± {100 * m[a][1]:.2f}" if a in m else "–" for a in at]
            auc = entry[metric]["auc"]
            lines.append(
                f"| {strategy} | {entry['trials']} | "
                + " | ".join(cells)
                + f" | {'–' if auc is None else f'{100 * auc:.2f}'} |"
            )
        lines.append("")
        if span:
            lines += [
                f"Area: the mean F1 over {span[0]}..{span[1]} labeled samples, the range every curve "
                "covers; each curve is interpolated linearly onto the union of the curves' label counts "
                "there, so every area is taken over the same labels.",
                "",
            ]
    compared = [
        (k, e)
        for k, e in sorted(summary["strategies"].items())
        if any("auc_minus_baseline" in e.get(m, {}) for m in METRICS)
    ]
    if compared:
        lines += [
            f"## Area minus {baseline}'s (percentage points of F1)",
            "",
            f"Trials are paired by seed (same initial labeled set, same first model). Each cell: the mean "
            f"difference, its {LEVEL} confidence interval over the pairs, and the verdict of a two-sided "
            f"paired t-test at 5% (`raydal.al.stats`): ahead of or behind {baseline} only when the interval "
            "excludes 0, else inconclusive. One pair gives no interval.",
            "",
            "| strategy | baseline | " + " | ".join(f"{m.replace('_', ' ')} area − {baseline}" for m in METRICS) + " |",
            "|---|---|" + "---|" * len(METRICS),
        ]
        for strategy, entry in compared:
            cells, base = [], "–"
            for metric in METRICS:
                d = entry.get(metric, {}).get("auc_minus_baseline")
                if d is None:
                    cells.append("–")
                    continue
                base = d["baseline"]
                cells.append(difference_text(d, base))
            lines.append(f"| {strategy} | {base} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += stopping_section(runs, summary)
    lines += diagnostics_section(runs, summary)
    lines += [
        "## Seconds per iteration (mean)",
        "",
        "| strategy | " + " | ".join(PHASES) + " |",
        "|---|" + "---|" * len(PHASES),
    ]
    for strategy, entry in sorted(summary["strategies"].items()):
        t = entry.get("seconds_per_iteration", {})
        lines.append(f"| {strategy} | " + " | ".join(f"{t[p]:.2f}" if p in t else "–" for p in PHASES) + " |")
    lines += ["", "![F1 curves](f1_curves.png)", ""]
    (out / REPORT_MD).write_text("\n".join(lines))
    import json

    (out / REPORT_JSON).write_text(json.dumps(summary, indent=1))
    summary["out_dir"] = str(out)
    return summary
