"""Ray Tune sweeps: one Tune trial per active-learning run, over b, m, lambda and friends.

A sweep takes a base :class:`~raydal.config.ALConfig` and a ``param_space`` whose
keys are ALConfig fields (``b``, ``m``, ``strategy``, ``seed``, ...) or
``train.<TrainConfig field>`` (``train.ll_lambda`` is lambda of eq. 3). Every
trial runs :class:`~raydal.al.loop.ActiveLearner` with the in-process
:class:`~raydal.al.executor.LocalExecutor` inside its Tune trial actor (CUDA when
the trial holds a GPU) and reports after each trained AL iteration.

A trial's state dir is ``<sweep_dir>/<overrides>-<fingerprint>``: a function of
the overrides and the base config only, so running the same sweep again resumes
every trial from its durable state (finished trials replay their curve without
training). See ``docs/sweeps.md``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al.report import area_under_curve
from raydal.config import ALConfig
from raydal.constants import ENV_DEVICE, SWEEP_JSON, SWEEP_LOCK, SWEEP_MD
from raydal.exceptions import ConfigError, RaydalError
from raydal.utils import atomic_write_json, is_uri

__all__ = ["METRICS", "SCHEDULERS", "SweepResult", "run_sweep", "sweepable_keys", "trial_config"]

#: What every report carries that a sweep can be ranked by (all "higher is better").
#: ``auc_*`` is the normalised area under the F1-vs-labels curve so far (the mean F1
#: over the label range); plain names are test metrics, ``val_*`` validation ones.
METRICS = ("auc_micro_f1", "auc_macro_f1", "micro_f1", "macro_f1",
           "val_auc_micro_f1", "val_auc_macro_f1", "val_micro_f1", "val_macro_f1")
SCHEDULERS = ("fifo", "asha")
#: ALConfig fields that change what a run selects and may vary between trials.
#: (``dataset``/``shards_dir``/``mode`` define the experiment; execution fields such
#: as ``iterations`` belong on the base config so every trial runs as long.)
_SWEEPABLE_FIELDS = ("strategy", "b", "m", "initial_labeled", "seed", "backbone", "weights",
                     "warm_start", "clustering_backend")
_TRAIN_PREFIX = "train."


def sweepable_keys() -> list[str]:
    """Valid ``param_space`` keys: the sweepable ALConfig fields and ``train.<TrainConfig field>``."""
    from raydal.training import TrainConfig

    return list(_SWEEPABLE_FIELDS) + [_TRAIN_PREFIX + f.name for f in dataclasses.fields(TrainConfig)]


def _check_keys(param_space: dict[str, Any]) -> None:
    valid = sweepable_keys()
    unknown = [k for k in param_space if k not in valid]
    if unknown:
        raise ConfigError(
            f"Unknown sweep parameter(s) {unknown}. Valid keys: {valid} "
            "(lambda of eq. 3 is 'train.ll_lambda'; set fixed fields such as iterations on the base config)."
        )


def _plain(value: Any) -> Any:
    """NumPy scalars from Tune's samplers as Python scalars (ALConfig checks ``int``, JSON needs it)."""
    return value.item() if isinstance(value, np.generic) else value


def _slug(overrides: dict[str, Any], limit: int = 80) -> str:
    """A readable, filesystem-safe name of the overrides: ``b=5,train.ll_lambda=0.1``."""
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    text = ",".join(f"{k}={fmt(v)}" for k, v in sorted(overrides.items())) or "base"
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:limit]


def trial_config(base: ALConfig, overrides: dict[str, Any], sweep_dir: str | Path) -> ALConfig:
    """The ALConfig of one trial: ``base`` with ``overrides`` applied, run in process.

    ``state_dir`` is ``<sweep_dir>/<slug of the overrides>-<first 8 hex digits of the
    trial's fingerprint>``: the same overrides on the same base always map to the same
    folder (so a re-run resumes it), and a changed base (epochs, dataset, ...) maps to a
    new folder instead of clashing with the old state.

    Raises:
        ConfigError: an unknown key, or a value the ALConfig / TrainConfig refuses.
    """
    _check_keys(overrides)
    overrides = {k: _plain(v) for k, v in overrides.items()}
    fields = base.to_dict()
    train = dict(fields["train"])
    for key, value in overrides.items():
        if key.startswith(_TRAIN_PREFIX):
            train[key[len(_TRAIN_PREFIX):]] = value
        else:
            fields[key] = value
    fields.update(train=train, executor="local")
    cfg = ALConfig.from_dict(fields)
    cfg.train_config()  # validates the train.* values now, not inside a trial
    name = f"{_slug(overrides)}-{cfg.fingerprint()[:8]}"
    return dataclasses.replace(cfg, state_dir=str(Path(sweep_dir) / name))


# -- the trial ----------------------------------------------------------------------------


@contextmanager
def _state_lock(state_dir: str) -> Iterator[None]:
    """Exclusive use of a trial state dir: two trials that sample the same overrides
    (``tune.choice`` can) run one after the other, and the second finds the state done."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(state_dir) / SWEEP_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _curve_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    """F1 of the last record and the running normalised areas over ``history`` (sorted by iteration)."""
    last = history[-1]
    x = [h["n_labeled"] for h in history]
    out: dict[str, float] = {}
    for split, prefix in (("test", ""), ("val", "val_")):
        for metric in ("micro_f1", "macro_f1"):
            y = [h[split][metric] for h in history]
            out[f"{prefix}{metric}"] = float(last[split][metric])
            out[f"{prefix}auc_{metric}"] = area_under_curve(np.asarray(x, float), np.asarray(y, float))
    return out


def _run_trial(config: dict[str, Any], base: dict[str, Any], sweep_dir: str) -> None:
    """Tune function trainable: one AL run, one ``tune.report`` per trained iteration.

    Records already in the state dir (a resumed trial) are reported first, in order,
    without counting in ``trained``, so the Tune curve of a resumed trial equals a
    fresh one's.
    """
    import ray
    from ray import tune

    from raydal.al.executor import get_executor
    from raydal.al.loop import ActiveLearner

    cfg = trial_config(ALConfig.from_dict(base), config, sweep_dir)
    # The trial's own device: CUDA when Tune gave it a GPU, else CPU even on a GPU node.
    os.environ[ENV_DEVICE] = "cuda" if ray.get_gpu_ids() else "cpu"
    with _state_lock(cfg.state_dir):
        learner = ActiveLearner(cfg, get_executor(cfg.executor, cfg), log=lambda s: print(f"[raydal] {s}", flush=True))
        reported: set[int] = set()
        trained = 0

        def report_new(fresh: bool) -> None:
            nonlocal trained
            history = sorted(learner.state.history, key=lambda h: h["iteration"])
            for k, record in enumerate(history):
                if record["iteration"] in reported:
                    continue
                reported.add(record["iteration"])
                trained += int(fresh)
                tune.report({
                    "iteration": record["iteration"],
                    "n_labeled": record["n_labeled"],
                    **_curve_metrics(history[: k + 1]),
                    "trained": trained,
                    "state_dir": cfg.state_dir,
                })

        report_new(fresh=False)
        while learner.step():
            report_new(fresh=True)


# -- running a sweep ------------------------------------------------------------------------


@dataclass
class SweepResult:
    """The trials of a sweep, best first.

    Attributes:
        rows: one dict per Tune trial: ``overrides``, ``n_labeled`` (final labeled
            count), ``iteration``, test ``micro_f1``/``macro_f1`` and their ``auc_*``
            (normalised areas, in [0, 1]), the ``val_*`` counterparts, ``trained``
            (iterations trained by this sweep run; 0 for a trial resumed as done),
            ``state_dir``, ``curve`` (``n_labeled``, test micro/macro F1 per
            iteration) and ``error`` (None, or the trial's error). Sorted by
            ``metric``, highest first; failed trials last.
        metric: the ranking metric (one of :data:`METRICS`).
        sweep_dir: where ``sweep.json``, ``sweep.md``, the trial state dirs and
            Tune's experiment folder (``tune/``) live.
        experiment_path: Tune's folder of this run of the sweep.
    """

    rows: list[dict[str, Any]]
    metric: str
    sweep_dir: str
    experiment_path: str = ""
    param_keys: list[str] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any]:
        """The row with the highest ``metric`` among trials that did not fail."""
        ok = [r for r in self.rows if r["error"] is None]
        if not ok:
            raise RaydalError(
                f"Every trial of the sweep in {self.sweep_dir} failed; see the 'error' column of "
                f"{Path(self.sweep_dir) / 'sweep.md'} and the trial logs under {self.experiment_path}."
            )
        return ok[0]

    def to_markdown(self) -> str:
        """A table of the trials, best first; F1 and areas in percent."""
        keys = self.param_keys
        head = ["rank", *keys, "labels", "micro F1", "macro F1", "area micro", "area macro",
                "val area micro", "trained", "state dir", "error"]
        lines = [f"# raydal sweep: {len(self.rows)} trial(s), ranked by {self.metric}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def pct(v: Any) -> str:
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"

        for rank, r in enumerate(self.rows, 1):
            cells = [str(rank), *(str(r["overrides"].get(k, "")) for k in keys),
                     str(r.get("n_labeled", "–")), pct(r.get("micro_f1")), pct(r.get("macro_f1")),
                     pct(r.get("auc_micro_f1")), pct(r.get("auc_macro_f1")), pct(r.get("val_auc_micro_f1")),
                     str(r.get("trained", "–")), Path(r["state_dir"]).name if r["state_dir"] else "–",
                     (r["error"] or "").splitlines()[0][:120] if r["error"] else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Each row's curve is in sweep.json (rows[].curve); its state dir works with `raydal report`, "
                  "which draws one curve per strategy and per setting that differs between the trials.", ""]
        return "\n".join(lines)

    def write(self) -> None:
        """Write ``sweep.json`` and ``sweep.md`` into ``sweep_dir``."""
        out = Path(self.sweep_dir)
        atomic_write_json(out / SWEEP_JSON, {
            "metric": self.metric, "mode": "max", "experiment_path": self.experiment_path,
            "param_keys": self.param_keys, "rows": self.rows,
        })
        (out / SWEEP_MD).write_text(self.to_markdown())


def _is_search_space(value: Any) -> bool:
    """A Tune search-space object (``tune.uniform(...)``, ``tune.choice(...)``, ...)."""
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain)


def _grid_points(param_space: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every combination of the list-valued and constant entries (search-space objects left out)."""
    fixed = {k: v for k, v in param_space.items() if not isinstance(v, (list, dict)) and not _is_search_space(v)}
    grids = {k: (v["grid_search"] if isinstance(v, dict) else v) for k, v in param_space.items()
             if isinstance(v, list) or (isinstance(v, dict) and "grid_search" in v)}
    for combo in itertools.product(*grids.values()):
        yield {**fixed, **dict(zip(grids, combo))}


def _tune_space(param_space: dict[str, Any]) -> dict[str, Any]:
    """Lists become ``tune.grid_search``; search-space objects and constants pass through."""
    from ray import tune

    for key, value in param_space.items():
        if isinstance(value, dict) and set(value) != {"grid_search"}:
            raise ConfigError(
                f"The sweep parameter {key!r} is a mapping {value!r}: give a list (grid), a Tune "
                "search space (tune.uniform, tune.choice, ...) or a constant."
            )
    return {k: tune.grid_search(v) if isinstance(v, list) else v for k, v in param_space.items()}


def _scheduler(name: str | None, metric: str, max_reports: int):
    """``None`` (FIFO) or an ASHA scheduler that can stop weak trials after any AL iteration."""
    if name in (None, "fifo"):
        return None
    if name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # time = reports = trained AL iterations; rungs at 1, 2, 4, ... iterations
        return ASHAScheduler(time_attr="training_iteration", metric=metric, mode="max",
                             max_t=max(1, max_reports), grace_period=1, reduction_factor=2)
    raise ConfigError(f"The 'scheduler' parameter of run_sweep must be one of {SCHEDULERS} or None. "
                      f"Got {name!r} instead.")


def _max_reports(base: ALConfig) -> int:
    """Trained iterations of a run of ``base``: one per query round plus the initial model."""
    if base.iterations is not None:
        return base.iterations + 1
    return math.ceil((base.label_budget - base.initial_labeled) / base.b) + 1


def _default_concurrency(resources: dict[str, float], cluster: dict[str, float],
                         explicit: int | None) -> int | None:
    """How many trials run at once: what the cluster holds now, keeping one CPU for the
    driver and Tune itself (a 2-core box runs one trial at a time)."""
    missing = {r: n for r, n in resources.items() if n > cluster.get(r, 0)}
    if missing:
        if explicit is not None:  # an autoscaling cluster: the user says how many will fit
            return explicit
        raise ConfigError(
            f"resources_per_trial {resources} asks for more than the cluster has now "
            f"({ {r: cluster.get(r, 0) for r in missing} }): Tune would wait forever on a fixed "
            "cluster. Lower resources_per_trial, or on an autoscaling cluster pass "
            "max_concurrent_trials explicitly."
        )
    if explicit is not None:
        return explicit
    fits = []
    for r, n in resources.items():
        if n <= 0:
            continue
        have = cluster.get(r, 0)
        if r == "CPU" and have > 1:
            have -= 1
        fits.append(int(have // n))
    return max(1, min(fits)) if fits else None


def _absolute(path: str | None) -> str | None:
    """Local paths absolute: Tune runs each trial in its own working directory."""
    return path if not path or is_uri(path) else str(Path(path).resolve())


def run_sweep(
    base: ALConfig,
    param_space: dict[str, Any],
    sweep_dir: str | Path,
    num_samples: int = 1,
    max_concurrent_trials: int | None = None,
    resources_per_trial: dict[str, float] | None = None,
    metric: str = "auc_micro_f1",
    scheduler: str | None = None,
) -> SweepResult:
    """Run one AL trial per point of ``param_space`` on Ray Tune; resumable on ``sweep_dir``.

    Args:
        base: the fixed part of every trial (dataset, shards, iterations, training).
            ``mode`` must be ``simulation``; ``executor`` and ``state_dir`` are ignored
            (trials train in process in their Tune actor, state in ``sweep_dir``).
        param_space: ``{key: list | Tune search space | constant}``; keys from
            :func:`sweepable_keys`, e.g. ``{"b": [10, 20], "m": [2, 3],
            "train.ll_lambda": tune.loguniform(0.01, 1.0)}``. A list is a grid.
        sweep_dir: a local (or shared, on a cluster) folder; re-running the same sweep
            on it resumes every trial from its state dir.
        num_samples: Tune's repeats of the grid; with search-space objects, the number
            of samples. Repeated trials of a pure grid are identical: sweep ``seed``.
        max_concurrent_trials: trials at once. Default: what the cluster holds now with
            one CPU left over (1 on a 2-core box).
        resources_per_trial: Ray resources of one trial, default ``{"CPU": 1}``; e.g.
            ``{"CPU": 4, "GPU": 1}`` trains each trial on its own GPU.
        metric: ranking metric, one of :data:`METRICS` (higher is better).
        scheduler: ``None``/``"fifo"``, or ``"asha"`` to stop weak trials early.

    Returns:
        The trials, best first; also written to ``sweep_dir/sweep.json`` and ``sweep.md``.

    Raises:
        ConfigError: bad keys, values, metric, scheduler or resources, before any Ray work.
    """
    from raydal.models import list_models
    from raydal.query import get_strategy

    # -- validate everything that can be checked before Ray starts ---------------------
    _check_keys(param_space)
    if metric not in METRICS:
        raise ConfigError(f"The 'metric' parameter of run_sweep must be one of {METRICS}. Got {metric!r} instead.")
    if base.mode != "simulation":
        raise ConfigError(f"The 'mode' of a swept ALConfig must be 'simulation' (the archive's labels answer); "
                          f"got {base.mode!r}. Sweeps cannot wait for annotators.")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"The 'num_samples' parameter of run_sweep must be an int >= 1. Got {num_samples!r} instead.")
    if max_concurrent_trials is not None and (not isinstance(max_concurrent_trials, int) or max_concurrent_trials < 1):
        raise ConfigError("The 'max_concurrent_trials' parameter of run_sweep must be an int >= 1 or None. "
                          f"Got {max_concurrent_trials!r} instead.")
    if is_uri(str(sweep_dir)):
        raise ConfigError(f"sweep_dir must be a local or mounted folder (got {sweep_dir}): trial checkpoints "
                          "are folders. On a cluster use a file system every node mounts, e.g. /mnt/raydal/sweeps/x.")
    space = _tune_space(param_space)
    sweep_dir = str(Path(sweep_dir).resolve())
    base = dataclasses.replace(base, shards_dir=_absolute(base.shards_dir), weights=_absolute(base.weights),
                               executor="local", state_dir=sweep_dir)
    points = list(_grid_points(param_space))
    if num_samples > 1 and not any(_is_search_space(v) for v in param_space.values()):
        raise ConfigError(
            f"num_samples={num_samples} repeats every grid point with the same seed, i.e. the same run "
            f"{num_samples} times. For repeated trials sweep the seed instead: 'seed': "
            f"{list(range(base.seed, base.seed + num_samples))}."
        )
    for point in points:  # every grid point builds a valid config with a known strategy and model
        cfg = trial_config(base, point, sweep_dir)
        get_strategy(cfg.strategy)
        if cfg.backbone not in list_models():
            raise ConfigError(f"Unknown backbone {cfg.backbone!r} in the sweep. Valid models: {list_models()}.")
    resources = dict(resources_per_trial or {"CPU": 1})
    if not resources or any(not isinstance(v, (int, float)) or v < 0 for v in resources.values()):
        raise ConfigError(f"resources_per_trial must map Ray resource names to numbers >= 0, e.g. "
                          f"{{'CPU': 1}} or {{'CPU': 4, 'GPU': 1}}. Got {resources_per_trial!r} instead.")
    sched = _scheduler(scheduler, metric, _max_reports(base))

    # -- Ray -----------------------------------------------------------------------------
    import ray
    from ray import tune

    from raydal.distributed.session import ensure_ray

    ensure_ray()
    concurrency = _default_concurrency(resources, ray.cluster_resources(), max_concurrent_trials)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, base=base.to_dict(), sweep_dir=sweep_dir), resources
    )
    name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # a reused name would resume Tune's run
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric, mode="max", num_samples=num_samples, max_concurrent_trials=concurrency,
            scheduler=sched,
        ),
        # A crashed trial actor is restarted; the trial resumes from its state dir.
        run_config=tune.RunConfig(storage_path=str(Path(sweep_dir) / "tune"), name=name,
                                  failure_config=tune.FailureConfig(max_failures=2)),
    )
    grid = tuner.fit()
    result = SweepResult(
        rows=_rows(grid, base, sweep_dir, metric), metric=metric, sweep_dir=sweep_dir,
        experiment_path=str(grid.experiment_path), param_keys=list(param_space),
    )
    result.write()
    return result


def _rows(grid, base: ALConfig, sweep_dir: str, metric: str) -> list[dict[str, Any]]:
    """One row per Tune trial from its last report, plus its curve from the state dir."""
    from raydal.al.state import StateStore

    rows = []
    for res in grid:
        overrides = {k: _plain(v) for k, v in (res.config or {}).items()}
        state_dir = trial_config(base, overrides, sweep_dir).state_dir
        metrics = res.metrics or {}
        row: dict[str, Any] = {"overrides": overrides}
        for key in ("n_labeled", "iteration", *METRICS, "trained"):
            row[key] = _plain(metrics.get(key))
        store = StateStore(state_dir)
        history = store.load().history if store.has_state() else []
        row["curve"] = [{"n_labeled": h["n_labeled"], "micro_f1": h["test"]["micro_f1"],
                         "macro_f1": h["test"]["macro_f1"]} for h in sorted(history, key=lambda h: h["iteration"])]
        row["state_dir"] = state_dir
        row["error"] = None if res.error is None else f"{type(res.error).__name__}: {res.error}"
        if row["error"] is None and row[metric] is None:
            row["error"] = "the trial reported nothing (stopped before its first trained iteration)"
        rows.append(row)

    def rank(r: dict[str, Any]) -> tuple:
        v = r[metric]
        good = r["error"] is None and v is not None and not math.isnan(v)
        return (0, -v) if good else (1, 0.0)

    return sorted(rows, key=rank)
