"""Ray Tune sweeps: one Tune trial per active-learning run, over b, m, lambda and friends.

Only what needs Ray Tune lives here: the trial function (one
:class:`~raydal.al.loop.ActiveLearner` with the in-process
:class:`~raydal.al.executor.LocalExecutor` inside its Tune trial actor, CUDA when
the trial holds a GPU, reporting after each trained AL iteration), the search
space and scheduler objects, and ``run_sweep``. Planning (keys, grid points,
trial configs and state dirs) and the results table are plain Python in
:mod:`raydal.al.sweep`. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from raydal.al.sweep import (
    METRICS,
    SCHEDULERS,
    SweepResult,
    curve_metrics,
    default_concurrency,
    plain,
    plan_sweep,
    rank_rows,
    sweepable_keys,
    trial_config,
    trial_lock,
    trial_row,
)
from raydal.config import ALConfig
from raydal.constants import ENV_DEVICE

__all__ = ["METRICS", "SCHEDULERS", "SweepResult", "run_sweep", "sweepable_keys", "trial_config"]


# -- the trial ----------------------------------------------------------------------------


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
    with trial_lock(cfg.state_dir):
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
                tune.report(
                    {
                        "iteration": record["iteration"],
                        "n_labeled": record["n_labeled"],
                        **curve_metrics(history[: k + 1]),
                        "trained": trained,
                        "state_dir": cfg.state_dir,
                    }
                )

        report_new(fresh=False)
        while learner.step():
            report_new(fresh=True)


# -- running a sweep ------------------------------------------------------------------------


def _is_search_space(value: Any) -> bool:
    """A Tune search-space object (``tune.uniform(...)``, ``tune.choice(...)``, ...)."""
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain)


def _tune_space(param_space: dict[str, Any]) -> dict[str, Any]:
    """Lists become ``tune.grid_search``; search-space objects and constants pass through."""
    from ray import tune

    return {k: tune.grid_search(v) if isinstance(v, list) else v for k, v in param_space.items()}


def _scheduler(name: str | None, metric: str, max_reports: int):
    """``None`` (FIFO) or an ASHA scheduler that can stop weak trials after any AL iteration.

    ``name`` is one of ``SCHEDULERS`` or None (``plan_sweep`` checked it)."""
    if name in (None, "fifo"):
        return None
    from ray.tune.schedulers import ASHAScheduler

    # time = reports = trained AL iterations; rungs at 1, 2, 4, ... iterations
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=metric,
        mode="max",
        max_t=max(1, max_reports),
        grace_period=1,
        reduction_factor=2,
    )


def run_sweep(base: ALConfig, param_space: dict[str, Any], sweep_dir: str | Path, **options: Any) -> SweepResult:
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
        options: :class:`~raydal.al.sweep.SweepOptions` fields, each declared there with
            its default: ``num_samples`` (Tune's repeats of the grid, or the number of
            samples of search-space entries), ``max_concurrent_trials`` (default: what
            the cluster holds now with one CPU left over), ``resources_per_trial`` (or
            ``cpus_per_trial``/``gpus_per_trial``; e.g. ``{"CPU": 4, "GPU": 1}`` trains each
            trial on its own GPU), ``metric`` (one of :data:`METRICS`, higher is better),
            ``scheduler`` (``"fifo"``, or ``"asha"`` to stop weak trials early).

    Returns:
        The trials, best first; also written to ``sweep_dir/sweep.json`` and ``sweep.md``.

    Raises:
        ConfigError: bad keys, values, metric, scheduler or resources, before any Ray work.
    """
    plan = plan_sweep(base, param_space, sweep_dir, is_search_space=_is_search_space, **options)
    base, sweep_dir, resources, opts = plan.base, plan.sweep_dir, plan.resources, plan.options
    metric = opts.metric
    space = _tune_space(param_space)
    sched = _scheduler(opts.scheduler, metric, plan.max_reports)

    # -- Ray -----------------------------------------------------------------------------
    import ray
    from ray import tune

    from raydal.distributed.session import ensure_ray

    ensure_ray()
    concurrency = default_concurrency(resources, ray.cluster_resources(), opts.max_concurrent_trials)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, base=base.to_dict(), sweep_dir=sweep_dir), resources
    )
    name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # a reused name would resume Tune's run
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode="max",
            num_samples=opts.num_samples,
            max_concurrent_trials=concurrency,
            scheduler=sched,
        ),
        # A crashed trial actor is restarted; the trial resumes from its state dir.
        run_config=tune.RunConfig(
            storage_path=str(Path(sweep_dir) / "tune"), name=name, failure_config=tune.FailureConfig(max_failures=2)
        ),
    )
    grid = tuner.fit()
    result = SweepResult(
        rows=_rows(grid, base, sweep_dir, metric),
        metric=metric,
        sweep_dir=sweep_dir,
        experiment_path=str(grid.experiment_path),
        param_keys=list(param_space),
    )
    result.write()
    return result


def _rows(grid, base: ALConfig, sweep_dir: str, metric: str) -> list[dict[str, Any]]:
    """One row per Tune trial from its last report, plus its curve from the state dir; ranked."""
    rows = []
    for res in grid:
        overrides = {k: plain(v) for k, v in (res.config or {}).items()}
        error = None if res.error is None else f"{type(res.error).__name__}: {res.error}"
        rows.append(
            trial_row(overrides, res.metrics or {}, trial_config(base, overrides, sweep_dir).state_dir, error, metric)
        )
    return rank_rows(rows, metric)
