"""An experiment: make sure the shards exist, then run the trials of an ``ALConfig``.

No Ray here: ``run_experiment`` takes the function that runs one trial, which is
in-process (:func:`run_trial_local`) or a driver actor on Ray
(``raydal.distributed.driver.run_trial_on_ray``, for executors registered with
``needs_ray``). Both build the executor with ``raydal.al.executor.get_executor``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from raydal.config import ALConfig, ExperimentConfig
from raydal.constants import F1_CURVES_PNG, MANIFEST_NAME, REPORT_MD, TRIAL_DIR_PREFIX

TrialRunner = Callable[[ALConfig, bool], dict[str, Any]]
#: Runs several trials, up to ``parallel`` at once: ``(configs, fork, parallel) -> summaries`` in order.
TrialsRunner = Callable[[list[ALConfig], bool, int], list[dict[str, Any]]]
#: How much a strategy's paired area difference to random varies from trial to trial (standard
#: deviation, F1 units), pooled over the six query functions compared with random in raydal's CPU
#: fidelity study (benchmarks/results/fidelity-cpu/study.json, ``trial_noise``: 5 trials per arm,
#: 840-image generated UCMerced archive at the calibrated difficulty, smallcnn at 32 px, 40..200
#: labels; 24 degrees of freedom per metric; run 2026-12-06). A single paired run cannot separate
#: effects smaller than about this. Refresh from the study's "trial-to-trial noise" line when it is rerun.
SINGLE_RUN_NOISE = {"micro_f1": 0.0233, "macro_f1": 0.045}


def generator_knobs(dataset: str) -> dict[str, Any]:
    """The generator settings of the archive ``raydal run`` generates without ``--data-root``: for
    UC Merced the difficulty calibrated so that random sampling reaches the paper's random baseline
    (``raydal.data.synth.ucmerced.CALIBRATED``, docs/data.md "Calibration"); ``synthesize``'s own
    defaults for the others (generated from published statistics, not calibrated)."""
    if dataset == "ucmerced":
        from raydal.data.synth.ucmerced import CALIBRATED

        return dict(CALIBRATED)
    return {}


def ensure_shards(
    dataset: str,
    shards_dir: str | Path,
    data_root: str | Path | None,
    size: int | None,
    fake_n: int | None,
    seed: int,
    log: Callable[[str], None] = print,
    reader: Mapping[str, Any] | None = None,
) -> Path | str:
    """Prepared shards in ``shards_dir`` (a folder or a storage URI): reused if complete, else
    prepared from ``data_root``, else from a fake archive generated next to them
    (``<shards_dir>-archive``; local folders only).

    reader: the dataset reader's settings for preparing (``ExperimentConfig.reader``, raydal
    prepare's reader flags). Shards already prepared are reused as they are: the settings they
    were prepared with are logged beside the given ones (remove the shards to prepare them again).
    """
    from raydal.data.shards import load_manifest, prepare
    from raydal.data.synth import synthesize
    from raydal.exceptions import DatasetNotFoundError
    from raydal.utils import file_exists, is_uri, join_location

    reader = dict(reader or {})
    shards_dir = str(shards_dir).rstrip("/") if is_uri(shards_dir) else Path(shards_dir)
    if file_exists(join_location(shards_dir, MANIFEST_NAME)):
        log(f"using prepared shards in {shards_dir}")
        if reader:
            log(
                f"the reader settings given ({reader}) apply when shards are prepared; these were prepared with "
                f"{load_manifest(shards_dir).reader_settings}. To prepare them with yours, remove {shards_dir} "
                "or pass another --shards-dir"
            )
        return shards_dir
    if data_root is None and is_uri(shards_dir):
        raise DatasetNotFoundError(
            f"No prepared shards at {shards_dir} (no {MANIFEST_NAME}). Fix: run `raydal "
            f"prepare <dataset> <archive> {shards_dir}` first, or pass --data-root."
        )
    if data_root is None:
        data_root = generated_archive_dir(shards_dir)
        if not data_root.exists():
            knobs = generator_knobs(dataset)
            log(
                f"no --data-root given: generating a fake {dataset} archive in {data_root}"
                + (" at the paper's difficulty (calibrated on random sampling, docs/data.md)" if knobs else "")
            )
            synthesize(dataset, data_root, n=fake_n, size=size, seed=seed, **knobs)
    log(f"preparing shards from {data_root} into {shards_dir}" + (f" (reader settings {reader})" if reader else ""))
    prepare(dataset, data_root, shards_dir, size=size, seed=seed, **reader)
    return shards_dir


def generated_archive_dir(shards_dir: str | Path) -> Path:
    """Where :func:`ensure_shards` generates a fake archive for ``shards_dir`` without a data root."""
    return Path(f"{str(shards_dir).rstrip('/')}-archive")


def generated_archive_note(exp: ExperimentConfig, paper: bool = True) -> str | None:
    """The first line of a run whose archive is generated (now, or when its shards were
    prepared): no ``--data-root``. None when its shards come from a real archive.
    ``paper``: the run follows the paper preset (the line then says it is not the paper's data)."""
    from raydal.data.shards import load_manifest
    from raydal.utils import file_exists, is_uri, join_location, normal_location

    config = exp.run
    if exp.data_root is not None:
        return None
    generated = generated_archive_dir(config.shards_dir)
    if file_exists(join_location(config.shards_dir, MANIFEST_NAME)):
        source = load_manifest(config.shards_dir).source_root
        if is_uri(config.shards_dir) or normal_location(source) != normal_location(generated):
            return None  # prepared from a real archive
    elif is_uri(config.shards_dir):
        return None  # ensure_shards refuses: nothing is generated
    line = (
        f"raydal: no --data-root: this run uses a GENERATED {config.dataset} archive ({generated}: images "
        f"made by `raydal synth`), not the real one"
    )
    if paper:
        line += "; its F1 is not comparable with the paper's. Pass --data-root FOLDER to run on the real archive"
    return line + "."


def trial_configs(base: ALConfig, trials: int) -> list[ALConfig]:
    """The paper's protocol: ``trials`` runs with seeds seed, seed+1, ... (different initial sets)."""
    if trials == 1:
        return [base]
    return [
        dataclasses.replace(base, seed=base.seed + k, state_dir=str(Path(base.state_dir) / f"{TRIAL_DIR_PREFIX}{k}"))
        for k in range(trials)
    ]


def run_trial_local(config: ALConfig, fork: bool = False) -> dict[str, Any]:
    """Run one trial in this process, on the executor ``config.executor`` names."""
    from raydal.al.executor import get_executor
    from raydal.al.loop import ActiveLearner

    learner = ActiveLearner(config, get_executor(config.executor, config), fork=fork)
    learner.run()
    return learner.summary()


def run_trials(
    configs: list[ALConfig],
    run_trial: TrialRunner,
    fork: bool = False,
    run_many: TrialsRunner | None = None,
    parallel: int = 1,
) -> list[dict[str, Any]]:
    """Run ``configs`` one after another with ``run_trial``, or up to ``parallel`` at once with
    ``run_many`` where one is given (``raydal.distributed.driver.run_trials_on_ray``); summaries in order.
    Each trial is seeded on its own, so running them at once changes no result."""
    if run_many is not None and parallel > 1 and len(configs) > 1:
        return run_many(configs, fork, parallel)
    return [run_trial(cfg, fork) for cfg in configs]


def run_experiment(
    base: ALConfig,
    trials: int,
    run_trial: TrialRunner,
    fork: bool = False,
    run_many: TrialsRunner | None = None,
    parallel: int = 1,
) -> list[dict[str, Any]]:
    """Run every trial (up to ``parallel`` at once, see :func:`run_trials`); returns their summaries
    (state dir, phase, F1 curve)."""
    return run_trials(trial_configs(base, trials), run_trial, fork, run_many, parallel)


# -- a strategy against a baseline (random sampling) ------------------------------
def baseline_state_dir(state_dir: str | Path, baseline: str) -> str:
    """Where the baseline's trials of a comparison live: beside the strategy's, ``<state_dir>-<baseline>``."""
    name = "".join(ch if ch.isalnum() else "-" for ch in baseline)
    return f"{str(state_dir).rstrip('/')}-{name}"


def run_comparison(
    base: ALConfig,
    trials: int,
    run_trial: TrialRunner,
    baseline: str = "random",
    fork: bool = False,
    out_dir: str | Path | None = None,
    run_many: TrialsRunner | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Run ``base``'s trials and the same trials with ``baseline`` as the strategy, then report both.

    The baseline's trial k has the strategy's seed, hence the same initial labeled
    set (drawn from ``phase_seed(seed, 0, "init")``), the same first model and the
    same archive; only the query differs. Its state dirs are
    :func:`baseline_state_dir`. The report (both curves on one plot, each area
    minus the baseline's) goes to ``out_dir`` (default ``<state_dir>/comparison``). With ``run_many``
    and ``parallel`` > 1 the two arms' trials run at once, trial k of both arms side by side.

    Returns ``{"strategy": [summaries], "baseline": [summaries], "report": build_report's summary,
    "difference": {metric: {"mean", "std", "paired", "range"}} or {} when a run has no curve}``.
    """
    from raydal.al.report import build_report
    from raydal.exceptions import ConfigError

    if base.strategy == baseline:
        raise ConfigError(
            f"The comparison baseline must differ from the strategy; both are {baseline!r}. "
            "Pick another --strategy or drop --compare."
        )
    if base.mode != "simulation":
        raise ConfigError(
            "A comparison needs mode 'simulation' (the archive's labels answer every query); "
            f"got mode {base.mode!r}: drop --compare or use --mode simulation."
        )
    other = dataclasses.replace(base, strategy=baseline, state_dir=baseline_state_dir(base.state_dir, baseline))
    pairs = [cfg for pair in zip(trial_configs(base, trials), trial_configs(other, trials)) for cfg in pair]
    done = run_trials(pairs, run_trial, fork, run_many, parallel)
    mine, theirs = done[0::2], done[1::2]
    result: dict[str, Any] = {
        "strategy": mine,
        "baseline": theirs,
        "report": None,
        "difference": {},
        "names": (base.strategy, baseline),
    }
    if any(s["curve"] for s in mine) and any(s["curve"] for s in theirs):
        out = Path(out_dir) if out_dir is not None else Path(base.state_dir) / "comparison"
        report = build_report([s["state_dir"] for s in mine + theirs], out, baseline=baseline)
        result["report"] = report
        entry = report["strategies"].get(base.strategy, {})
        result["difference"] = {
            m: v["auc_minus_baseline"] for m, v in entry.items() if isinstance(v, dict) and "auc_minus_baseline" in v
        }
    return result


def comparison_text(result: dict[str, Any]) -> str:
    """What the job prints at the end of :func:`run_comparison`: where the report is, then one line per
    metric with both areas and the difference, its 95% interval over the paired trials and the verdict
    of a paired t-test at 5% (:mod:`raydal.al.stats`); for a single trial, what one run cannot tell."""
    from raydal.al.report import difference_text
    from raydal.al.stats import MIN_TRIALS

    strategy, baseline = result["names"]
    report = result["report"]
    out = Path(report["out_dir"])
    lines = [
        f"comparison: {out / REPORT_MD} and {out / F1_CURVES_PNG} "
        f"({baseline} runs in {result['baseline'][0]['state_dir']})"
    ]
    for metric, d in result["difference"].items():
        mine = report["strategies"][strategy][metric]["auc"]
        theirs = report["strategies"][d["baseline"]][metric]["auc"]
        line = (
            f"area under {metric.replace('_', ' ')} ({d['range'][0]}..{d['range'][1]} labels): "
            f"{strategy} {100 * mine:.2f} vs {baseline} {100 * theirs:.2f}: difference "
        )
        if d["paired"] == 1:
            noise = SINGLE_RUN_NOISE.get(metric)
            seen = (
                f" (in raydal's CPU fidelity study this difference varies by SD {100 * noise:.2f} points "
                "between trials)"
                if noise
                else ""
            )
            line += (
                f"{100 * d['mean']:+.2f} from 1 paired trial: no interval, no verdict; a single paired run "
                f"cannot separate effects below its noise{seen}; --trials {MIN_TRIALS} gives a verdict"
            )
        else:
            line += difference_text(d, baseline)
        lines.append(line)
    return "\n".join(lines)
