"""A Ray Train worker group kept for a whole AL run: one start per run, not one per iteration.

Starting a worker group (Ray Train's controller, one process per worker, their torch
imports, the process group) costs 10-15 s on 2 cores, more than the demo's training
itself. :class:`KeptWorkerGroup` starts one ``TorchTrainer`` whose workers serve jobs
(``raydal.distributed.train._train_worker``): each :meth:`KeptWorkerGroup.run` hands
them one ``train_with_ray`` call's work (train, evaluate, score) and waits for rank 0's
output; :meth:`KeptWorkerGroup.call` runs a ``LocalExecutor`` method on rank 0 (a
prediction for a strategy that scores nothing, an evaluation the run did not make), so
nothing else asks the cluster for CPUs the group holds.

A host actor (``_Host``: on the driver's node, no CPU, threaded) runs
``TorchTrainer.fit`` in a thread and holds the job in progress and the outputs; the
driver never imports torch. Fault tolerance is Ray Train's: a lost worker or node
restarts the group (``max_failures`` restarts over the group's life), whose workers ask
the host for the job in progress and resume it from its last checkpoint (checkpoint
folders are named ``job-NNNNN-epoch-EEEEE``; an earlier job's checkpoint is never
resumed from). When the restarts are spent the fit ends with the error; :meth:`run`
returns it (``train_with_ray`` raises it) and the next run starts a new group.

:meth:`close` lets the workers return and the fit end; the AL loop calls it when a run
ends or waits for labels (``Executor.release``), so an idle run holds no CPU or GPU.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from raydal.exceptions import RaydalError

__all__ = ["KeptWorkerGroup"]

#: Seconds ``close`` waits for the workers to return and the fit to end before killing the host.
CLOSE_TIMEOUT_S = 60.0


class _Host:
    """The fit's thread, the job in progress and the outputs (a threaded Ray actor)."""

    def __init__(self, loop_config: dict[str, Any], scaling, run) -> None:
        import ray

        self._changed = threading.Condition()
        self._job: dict[str, Any] | None = None
        self._last_id = 0
        self._done: set[int] = set()
        self._outputs: dict[int, Any] = {}
        self._closed = False
        self._ended = None  # the fit's _FitResult once it returns
        config = dict(loop_config, host=ray.get_runtime_context().current_actor)
        threading.Thread(target=self._fit, args=(config, scaling, run), name="raydal-fit", daemon=True).start()

    def _fit(self, loop_config, scaling, run) -> None:
        from raydal.distributed.train import _fit_trainer, _FitResult

        try:
            ended = _fit_trainer(loop_config, scaling, run)
        except BaseException as err:  # noqa: BLE001 - handed to the driver, which raises it
            ended = _FitResult(None, None, None, err)
        with self._changed:
            self._ended = ended
            self._changed.notify_all()

    # -- the driver's side ----------------------------------------------------------
    def submit(self, job: dict[str, Any]) -> int:
        """Hand ``job`` to the workers; its number."""
        with self._changed:
            self._last_id += 1
            self._job = dict(job, id=self._last_id, checkpoint_prefix=f"job-{self._last_id:05d}-")
            self._changed.notify_all()
            return self._last_id

    def output(self, job_id: int) -> tuple[str, Any]:
        """``("done", rank 0's output)``, or ``("ended", the fit's _FitResult)`` if the fit ended first."""
        with self._changed:
            self._changed.wait_for(lambda: job_id in self._outputs or self._ended is not None)
            if job_id in self._outputs:
                return "done", self._outputs.pop(job_id)
            return "ended", self._ended

    def close(self, timeout: float) -> bool:
        """Let the workers return; True once the fit has ended (within ``timeout`` seconds)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            return self._changed.wait_for(lambda: self._ended is not None, timeout)

    # -- the workers' side ------------------------------------------------------------
    def next_job(self, done: int) -> dict[str, Any] | None:
        """The job in progress if its number is above ``done`` (the worker's last; 0 after a
        restart) and no rank 0 finished it; waits for one. None once closed."""
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._closed
                    or (self._job is not None and self._job["id"] > done and self._job["id"] not in self._done)
                )
            )
            return None if self._closed else self._job

    def finish(self, job_id: int, output: Any) -> None:
        with self._changed:
            self._done.add(job_id)
            self._outputs[job_id] = output
            self._changed.notify_all()


class KeptWorkerGroup:
    """A Ray Train worker group that serves ``train_with_ray`` calls until :meth:`close`.

    Started by the first :meth:`run` with that call's scaling and run config; a run with
    another scaling config (workers, GPUs, CPUs each) closes it and starts a new one.
    """

    def __init__(self) -> None:
        self._host = None
        self._scaling = None
        self._path: str | None = None

    @property
    def started(self) -> bool:
        return self._host is not None

    def run(self, job: dict[str, Any], scaling, run_config):
        """Train, evaluate and score as ``job`` (``train_with_ray``'s loop config) says, on this group.

        Returns a ``_FitResult``: rank 0's output and its last checkpoint, or the fit's error
        when the group ended (the group is then closed).
        """
        from raydal.distributed.train import _FitResult

        if self._host is not None and self._scaling != scaling:
            self.close()
        if self._host is None:
            self._start(scaling, run_config)
        kind, value = self._wait(job)
        if kind == "ended":
            return value
        checkpoint = value.pop("checkpoint", None)
        return _FitResult(value, checkpoint, self._path, None)

    def call(self, config: dict[str, Any], method: str, *args) -> Any:
        """``LocalExecutor(config).<method>(*args)`` on rank 0 of the group (started: see :attr:`started`)."""
        if self._host is None:
            raise RaydalError("KeptWorkerGroup.call needs a started group: run a job first.")
        kind, value = self._wait({"call": (config, method, *args)})
        if kind == "ended":
            raise value.error or RaydalError(f"The kept Ray Train group under {self._path} ended; see its logs.")
        return value["value"]

    def close(self, wait: bool = True) -> None:
        """Let the workers return and the fit end, then kill the host (after ``CLOSE_TIMEOUT_S`` at
        most); ``wait=False``: kill it at once (its controller and workers go with it)."""
        import ray

        host, self._host = self._host, None
        if host is None:
            return
        try:
            if wait:
                ray.get(host.close.remote(CLOSE_TIMEOUT_S))
        except ray.exceptions.RayError:
            pass  # already gone: its workers went with it
        finally:
            ray.kill(host)

    def _start(self, scaling, run_config) -> None:
        import ray

        from raydal.distributed.train import next_to_this_process

        host = ray.remote(_Host).options(max_concurrency=4 * scaling.num_workers + 8, **next_to_this_process())
        self._host = host.remote({}, scaling, run_config)
        self._scaling = scaling
        self._path = os.path.join(str(run_config.storage_path), run_config.name)

    def _wait(self, job: dict[str, Any]) -> tuple[str, Any]:
        import ray

        try:
            job_id = ray.get(self._host.submit.remote(job))
            kind, value = ray.get(self._host.output.remote(job_id))
        except KeyboardInterrupt:  # the job is mid-way: do not wait for it
            self.close(wait=False)
            raise
        except ray.exceptions.RayActorError as err:  # the host died (its node, a kill): the group went with it
            self._host = None
            raise RaydalError(
                f"The host of the kept Ray Train group under {self._path} died ({err}); the next run starts a new group."
            ) from err
        if kind == "ended":
            self.close()
            if value.error is None:
                value.error = RaydalError(
                    f"The kept Ray Train group under {self._path} ended without finishing its job; see its logs."
                )
        return kind, value
