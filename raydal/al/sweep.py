"""Planning a sweep and reading its results: plain Python, no Ray.

A sweep takes a base :class:`~raydal.config.ALConfig` and a ``param_space`` whose
keys are ALConfig fields (``b``, ``m``, ``strategy``, ``seed``, ...) or
``train.<TrainConfig field>`` (``train.ll_lambda`` is lambda of eq. 3). This
module validates the space, expands its grid points, builds each trial's config
and state dir, computes what a trial reports after each AL iteration, and ranks
the finished trials into the sweep table. ``raydal.distributed.tune.run_sweep``
hands the same space to Ray Tune and calls these functions; see ``docs/sweeps.md``.

A trial's state dir is ``<sweep_dir>/<overrides>-<fingerprint>``: a function of
the overrides and the base config only, so running the same sweep again resumes
every trial from its durable state.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al.report import area_under_curve
from raydal.config import ALConfig
from raydal.constants import SWEEP_JSON, SWEEP_LOCK, SWEEP_MD
from raydal.exceptions import ConfigError, RaydalError
from raydal.settings import RESULT, Interval, fields_of_kind, make_settings, setting
from raydal.utils import atomic_write_json, is_uri

__all__ = [
    "METRICS",
    "SCHEDULERS",
    "SweepPlan",
    "SweepOptions",
    "SweepResult",
    "curve_metrics",
    "default_concurrency",
    "grid_points",
    "max_reports",
    "plan_sweep",
    "rank_rows",
    "sweepable_keys",
    "trial_config",
    "trial_lock",
    "trial_row",
]

#: What every report carries that a sweep can be ranked by (all "higher is better").
#: ``auc_*`` is the normalised area under the F1-vs-labels curve so far (the mean F1
#: over the label range); plain names are test metrics, ``val_*`` validation ones.
METRICS = (
    "auc_micro_f1",
    "auc_macro_f1",
    "micro_f1",
    "macro_f1",
    "val_auc_micro_f1",
    "val_auc_macro_f1",
    "val_micro_f1",
    "val_macro_f1",
)
SCHEDULERS = ("fifo", "asha")


@dataclass
class SweepOptions:
    """How a sweep runs (``run_sweep``'s keyword arguments, ``raydal sweep``'s flags): each
    option's default, range and help declared once."""

    num_samples: int = setting(
        1,
        "Tune's repeats of the grid; with search-space entries, the number of samples (repeated "
        "trials of a pure grid are identical: sweep the seed instead)",
        Interval(int, 1),
    )
    max_concurrent_trials: int | None = setting(
        None,
        "trials at once (default: what the cluster holds now with one CPU left over; give it on an "
        "autoscaling cluster)",
        Interval(int, 1),
    )
    cpus_per_trial: float = setting(1.0, "CPUs of one trial", Interval(float, 0))
    gpus_per_trial: float = setting(0.0, "GPUs of one trial (each trial trains on its own)", Interval(float, 0))
    resources_per_trial: dict[str, float] | None = setting(
        None,
        "Ray resources of one trial, e.g. {'CPU': 4, 'GPU': 1} (default: cpus_per_trial, gpus_per_trial)",
        cli=False,
    )
    metric: str = setting(
        "auc_micro_f1",
        "rank trials by this, higher is better (val_auc_micro_f1 to pick settings without touching test)",
        choices=METRICS,
    )
    scheduler: str | None = setting("fifo", "fifo (None too), or asha to stop weak trials early", choices=SCHEDULERS)

    @property
    def resources(self) -> dict[str, float]:
        """Ray resources of one trial: ``resources_per_trial``, else the CPUs and any GPUs."""
        if self.resources_per_trial is not None:
            return dict(self.resources_per_trial)
        return {"CPU": self.cpus_per_trial, **({"GPU": self.gpus_per_trial} if self.gpus_per_trial else {})}


_TRAIN_PREFIX = "train."
#: Where every trial runs: in process in its Tune actor, on the device its resources give
#: it. The Ray executor's own placement settings do not apply there, so none is swept.
_TRIAL_PLACEMENT = {"executor": "local"}
_RAY_PLACEMENT = ("num_workers", "use_gpu")


def sweepable_keys() -> list[str]:
    """Valid ``param_space`` keys: the settings that change results (``raydal.settings.RESULT``),
    ALConfig fields and ``train.<TrainConfig field>``, but the trials' placement (``executor``,
    ``num_workers``, ``use_gpu``: a trial trains in process on its Tune resources).

    Identity settings (dataset, shards, mode) define the experiment and execution
    settings (``iterations``, workers, ...) belong on the base config, so every trial
    runs as long on the same data.
    """
    from raydal.training.config import TrainConfig

    placement = {*_TRIAL_PLACEMENT, *_RAY_PLACEMENT}
    fields = [f for f in fields_of_kind(ALConfig, RESULT) if f != "train" and f not in placement]
    return fields + [_TRAIN_PREFIX + f for f in fields_of_kind(TrainConfig, RESULT)]


def _check_keys(param_space: dict[str, Any]) -> None:
    valid = sweepable_keys()
    unknown = [k for k in param_space if k not in valid]
    if unknown:
        raise ConfigError(
            f"Unknown sweep parameter(s) {unknown}. Valid keys: {valid} "
            "(lambda of eq. 3 is 'train.ll_lambda'; set fixed fields such as iterations on the base config)."
        )


def plain(value: Any) -> Any:
    """NumPy scalars (e.g. from Tune's samplers) as Python scalars (ALConfig checks ``int``, JSON needs it)."""
    return value.item() if isinstance(value, np.generic) else value


def _slug(overrides: dict[str, Any], limit: int = 80) -> str:
    """A readable, filesystem-safe name of the overrides: ``b=5,train.ll_lambda=0.2``."""

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
    overrides = {k: plain(v) for k, v in overrides.items()}
    fields = base.to_dict()
    train = dict(fields["train"])
    for key, value in overrides.items():
        if key.startswith(_TRAIN_PREFIX):
            train[key[len(_TRAIN_PREFIX) :]] = value
        else:
            fields[key] = value
    fields.update(train=train, **_TRIAL_PLACEMENT)
    cfg = ALConfig.from_dict(fields)
    cfg.train_config()  # validates the train.* values now, not inside a trial
    name = f"{_slug(overrides)}-{cfg.fingerprint()[:8]}"
    return dataclasses.replace(cfg, state_dir=str(Path(sweep_dir) / name))


@contextmanager
def trial_lock(state_dir: str) -> Iterator[None]:
    """Exclusive use of a trial state dir: two trials that sample the same overrides
    (``tune.choice`` can) run one after the other, and the second finds the state done."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(state_dir) / SWEEP_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def curve_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
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


# -- the space ------------------------------------------------------------------------------


def _check_values(param_space: dict[str, Any]) -> None:
    for key, value in param_space.items():
        if isinstance(value, dict) and set(value) != {"grid_search"}:
            raise ConfigError(
                f"The sweep parameter {key!r} is a mapping {value!r}: give a list (grid), a Tune "
                "search space (tune.uniform, tune.choice, ...) or a constant."
            )


def grid_points(param_space: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every combination of the lists (and ``{"grid_search": [...]}``) with the constants.

    ``param_space`` must hold no search-space objects (``tune.uniform``, ...): the
    caller leaves them out, since they are sampled, not enumerated.
    """
    fixed = {k: v for k, v in param_space.items() if not isinstance(v, (list, dict))}
    grids = {
        k: (v["grid_search"] if isinstance(v, dict) else v)
        for k, v in param_space.items()
        if isinstance(v, list) or (isinstance(v, dict) and "grid_search" in v)
    }
    for combo in itertools.product(*grids.values()):
        yield {**fixed, **dict(zip(grids, combo))}


def max_reports(base: ALConfig) -> int:
    """Trained iterations of a run of ``base``: one per query round plus the initial model."""
    if base.iterations is not None:
        return base.iterations + 1
    return math.ceil((base.label_budget - base.initial_labeled) / base.b) + 1


def default_concurrency(resources: dict[str, float], cluster: dict[str, float], explicit: int | None) -> int | None:
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


@dataclass
class SweepPlan:
    """A validated sweep, ready to hand to a runner.

    base: the fixed part of every trial, paths made absolute, ``executor="local"``.
    sweep_dir: absolute folder of the sweep. points: the grid points (search-space
    entries left out). resources: Ray resources of one trial. max_reports: trained
    iterations of one trial (ASHA's horizon). options: the checked :class:`SweepOptions`.
    """

    base: ALConfig
    sweep_dir: str
    points: list[dict[str, Any]]
    resources: dict[str, float]
    max_reports: int
    options: SweepOptions = field(default_factory=SweepOptions)


def plan_sweep(
    base: ALConfig,
    param_space: dict[str, Any],
    sweep_dir: str | Path,
    *,
    is_search_space: Callable[[Any], bool] = lambda value: False,
    **options: Any,
) -> SweepPlan:
    """Check everything about a sweep that can be checked without Ray, and plan it.

    Arguments as in ``raydal.distributed.tune.run_sweep`` (options: :class:`SweepOptions`
    fields); ``is_search_space`` tells sampled entries (Tune's ``Domain`` objects) from
    constants. Every grid point is built into a trial config (which checks strategy,
    backbone and dataset names).

    Raises:
        ConfigError: bad keys, values, options (metric, scheduler, num_samples, resources) or mode.
    """
    _check_keys(param_space)
    _check_values(param_space)
    opts: SweepOptions = make_settings(SweepOptions, options, "run_sweep")
    num_samples = opts.num_samples
    if base.mode != "simulation":
        raise ConfigError(
            f"The 'mode' of a swept ALConfig must be 'simulation' (the archive's labels answer); "
            f"got {base.mode!r}. Sweeps cannot wait for annotators."
        )
    if is_uri(str(sweep_dir)):
        raise ConfigError(
            f"sweep_dir must be a local or mounted folder (got {sweep_dir}): trial checkpoints "
            "are folders. On a cluster use a file system every node mounts, e.g. /mnt/raydal/sweeps/x."
        )
    sampled = {k for k, v in param_space.items() if is_search_space(v)}
    if num_samples > 1 and not sampled:
        raise ConfigError(
            f"num_samples={num_samples} repeats every grid point with the same seed, i.e. the same run "
            f"{num_samples} times. For repeated trials sweep the seed instead: 'seed': "
            f"{list(range(base.seed, base.seed + num_samples))}."
        )
    sweep_dir = str(Path(sweep_dir).resolve())
    base = dataclasses.replace(
        base,
        shards_dir=_absolute(base.shards_dir),
        weights=_absolute(base.weights),
        state_dir=sweep_dir,
        **_TRIAL_PLACEMENT,
    )
    points = list(grid_points({k: v for k, v in param_space.items() if k not in sampled}))
    for point in points:  # every grid point builds a valid config (ALConfig checks the names too)
        trial_config(base, point, sweep_dir)
    resources = opts.resources
    if not resources or any(not isinstance(v, (int, float)) or v < 0 for v in resources.values()):
        raise ConfigError(
            f"resources_per_trial must map Ray resource names to numbers >= 0, e.g. "
            f"{{'CPU': 1}} or {{'CPU': 4, 'GPU': 1}}. Got {opts.resources_per_trial!r} instead."
        )
    return SweepPlan(base, sweep_dir, points, resources, max_reports(base), opts)


# -- the results ------------------------------------------------------------------------------


def trial_row(
    overrides: dict[str, Any], last_report: dict[str, Any], state_dir: str, error: str | None, metric: str
) -> dict[str, Any]:
    """One row of the sweep table: the trial's last report plus its curve read from ``state_dir``."""
    from raydal.al.state import StateStore

    row: dict[str, Any] = {"overrides": {k: plain(v) for k, v in overrides.items()}}
    for key in ("n_labeled", "iteration", *METRICS, "trained"):
        row[key] = plain(last_report.get(key))
    store = StateStore(state_dir)
    history = store.load().history if store.has_state() else []
    row["curve"] = [
        {"n_labeled": h["n_labeled"], "micro_f1": h["test"]["micro_f1"], "macro_f1": h["test"]["macro_f1"]}
        for h in sorted(history, key=lambda h: h["iteration"])
    ]
    row["state_dir"] = state_dir
    row["error"] = error
    if row["error"] is None and row[metric] is None:
        row["error"] = "the trial reported nothing (stopped before its first trained iteration)"
    return row


def rank_rows(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """``rows`` by ``metric``, highest first; failed trials (or NaN / missing metric) last."""

    def rank(r: dict[str, Any]) -> tuple:
        v = r[metric]
        good = r["error"] is None and v is not None and not math.isnan(v)
        return (0, -v) if good else (1, 0.0)

    return sorted(rows, key=rank)


@dataclass
class SweepResult:
    """The trials of a sweep, best first.

    Attributes:
        rows: one dict per trial: ``overrides``, ``n_labeled`` (final labeled
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
        head = [
            "rank",
            *keys,
            "labels",
            "micro F1",
            "macro F1",
            "area micro",
            "area macro",
            "val area micro",
            "trained",
            "state dir",
            "error",
        ]
        lines = [
            f"# raydal sweep: {len(self.rows)} trial(s), ranked by {self.metric}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]

        def pct(v: Any) -> str:
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"

        for rank, r in enumerate(self.rows, 1):
            cells = [
                str(rank),
                *(str(r["overrides"].get(k, "")) for k in keys),
                str(r.get("n_labeled", "–")),
                pct(r.get("micro_f1")),
                pct(r.get("macro_f1")),
                pct(r.get("auc_micro_f1")),
                pct(r.get("auc_macro_f1")),
                pct(r.get("val_auc_micro_f1")),
                str(r.get("trained", "–")),
                Path(r["state_dir"]).name if r["state_dir"] else "–",
                (r["error"] or "").splitlines()[0][:120] if r["error"] else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "Each row's curve is in sweep.json (rows[].curve); its state dir works with `raydal report`, "
            "which draws one curve per strategy and per setting that differs between the trials.",
            "",
        ]
        return "\n".join(lines)

    def write(self) -> None:
        """Write ``sweep.json`` and ``sweep.md`` into ``sweep_dir``."""
        out = Path(self.sweep_dir)
        atomic_write_json(
            out / SWEEP_JSON,
            {
                "metric": self.metric,
                "mode": "max",
                "experiment_path": self.experiment_path,
                "param_keys": self.param_keys,
                "rows": self.rows,
            },
        )
        (out / SWEEP_MD).write_text(self.to_markdown())
