"""An experiment: make sure the shards exist, then run the trials of an ``ALConfig``.

No Ray here: ``run_experiment`` takes the function that runs one trial, which is
in-process (:func:`run_trial_local`) or a driver actor on Ray
(``raydal.distributed.driver.run_trial_on_ray``, for executors registered with
``needs_ray``). Both build the executor with ``raydal.al.executor.get_executor``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from raydal.config import ALConfig
from raydal.constants import MANIFEST_NAME, TRIAL_DIR_PREFIX

TrialRunner = Callable[[ALConfig, bool], dict[str, Any]]


def ensure_shards(dataset: str, shards_dir: str | Path, data_root: str | Path | None, size: int | None,
                  fake_n: int | None, seed: int, log: Callable[[str], None] = print) -> Path:
    """Prepared shards in ``shards_dir``: reused if complete, else prepared from ``data_root``,
    else from a fake archive generated next to them (``<shards_dir>-archive``)."""
    from raydal.data.shards import prepare
    from raydal.data.synth import synthesize

    shards_dir = Path(shards_dir)
    if (shards_dir / MANIFEST_NAME).exists():
        log(f"using prepared shards in {shards_dir}")
        return shards_dir
    if data_root is None:
        data_root = Path(f"{shards_dir}-archive")
        if not data_root.exists():
            log(f"no --data-root given: generating a fake {dataset} archive in {data_root}")
            synthesize(dataset, data_root, n=fake_n, size=size, seed=seed)
    log(f"preparing shards from {data_root} into {shards_dir}")
    prepare(dataset, data_root, shards_dir, size=size, seed=seed)
    return shards_dir


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


def run_experiment(base: ALConfig, trials: int, run_trial: TrialRunner, fork: bool = False) -> list[dict[str, Any]]:
    """Run every trial; returns their summaries (state dir, phase, F1 curve)."""
    return [run_trial(cfg, fork) for cfg in trial_configs(base, trials)]
