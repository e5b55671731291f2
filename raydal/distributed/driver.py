"""The long-lived driver actor that owns one active-learning run.

The logic is :class:`raydal.al.loop.ActiveLearner` (a plain class); this module
only turns it into a named Ray actor. The actor restarts on failure
(``max_restarts``) and its ``run`` is retried (``max_task_retries``): because every
step is saved atomically in the state dir, a restarted actor resumes from the last
completed step.
"""

from __future__ import annotations

import hashlib
from typing import Any

from raydal.config import ALConfig

NAMESPACE = "raydal"


class DriverService:
    """Holds an ActiveLearner; methods are what the job and the CLI call remotely."""

    def __init__(self, config: dict[str, Any], fork: bool = False):
        from raydal.al.executor import get_executor
        from raydal.al.loop import ActiveLearner

        cfg = ALConfig.from_dict(config)
        executor = get_executor(cfg.executor, cfg)
        self.learner = ActiveLearner(cfg, executor, fork=fork, log=lambda s: print(f"[raydal] {s}", flush=True))

    def run(self) -> dict[str, Any]:
        self.learner.run()
        return self.learner.summary()

    def step(self) -> bool:
        return self.learner.step()

    def status(self) -> dict[str, Any]:
        return self.learner.summary()


def driver_name(config: ALConfig) -> str:
    """One driver per state dir: a second job on the same state dir finds the running one."""
    return "raydal-driver-" + hashlib.sha1(config.state_dir.encode()).hexdigest()[:12]


def start_driver(config: ALConfig, fork: bool = False):
    """Create (or find) the named driver actor for ``config.state_dir``."""
    import ray

    actor = ray.remote(DriverService).options(
        name=driver_name(config),
        namespace=NAMESPACE,
        get_if_exists=True,
        max_restarts=3,
        max_task_retries=3,
        num_cpus=0,
    )
    return actor.remote(config.to_dict(), fork)


def run_trials_on_ray(configs: list[ALConfig], fork: bool = False, parallel: int = 2) -> list[dict[str, Any]]:
    """Run ``configs`` in their own driver actors, up to ``parallel`` at once; summaries in order.

    Their Ray Train runs overlap (each waits for its workers' resources), so the worker-group
    starts of one trial hide behind another's work. A failed trial stops the others (their state
    is saved: the same command resumes them) and its error is raised.
    """
    import ray

    results: list[dict[str, Any] | None] = [None] * len(configs)
    pending = list(enumerate(configs))
    running: dict[Any, tuple[int, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                i, config = pending.pop(0)
                driver = start_driver(config, fork)
                running[driver.run.remote()] = (i, driver)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                i, driver = running.pop(ref)
                try:
                    results[i] = ray.get(ref)
                finally:
                    ray.kill(driver, no_restart=True)
    finally:
        for _, driver in running.values():
            ray.kill(driver, no_restart=True)
    return results  # type: ignore[return-value]


def run_trial_on_ray(config: ALConfig, fork: bool = False) -> dict[str, Any]:
    """Run one trial in its driver actor and wait for it."""
    return run_trials_on_ray([config], fork, parallel=1)[0]
