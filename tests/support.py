"""Helpers shared by the test suites: a free port, a local Ray, and waiting for fault points.

Tests that act on a running job (kill a process, remove a node, delete files) wait for an event,
never for a time window: the job reaches a named fault point (``raydal.faults``), the test sees
it in the trace file or in the point's ``hang-once``/``pause-once`` marker, acts, and (for
``pause-once``) lets the process go on with :func:`release`. A deadline only bounds how long a
test waits for the event; what it asserts never depends on the machine's speed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from raydal.constants import ENV_FAULT, ENV_FAULT_TRACE


def free_port() -> int:
    """A TCP port nothing listens on at the moment (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fault_env(trace: Path, faults: str | None = None) -> dict[str, str]:
    """The environment that arms ``faults`` (``RAYDAL_FAULT``) and traces every point to ``trace``."""
    env = {ENV_FAULT_TRACE: str(trace)}
    if faults:
        env[ENV_FAULT] = faults
    return env


def start_local_ray(env: dict[str, str] | None = None) -> None:
    """Start a 2-CPU local Ray for this process (shutting down the one it has); ``env``: environment
    variables of every task and actor it runs (the job's runtime environment; Ray Train's workers
    inherit them). Ray Train polls its workers as often as on raydal's embedded Ray."""
    import ray

    from raydal.constants import EMBEDDED_HEALTH_CHECK_INTERVAL_S, ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL

    env = {ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL: EMBEDDED_HEALTH_CHECK_INTERVAL_S, **(env or {})}
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(Path("/tmp") / f"raydal-ray-{os.getpid()}"),
        logging_level="WARNING",
        runtime_env={"env_vars": env},
    )


@contextlib.contextmanager
def local_ray(env: dict[str, str] | None = None) -> Iterator:
    """:func:`start_local_ray`, shut down on exit."""
    import ray

    start_local_ray(env)
    try:
        yield ray
    finally:
        ray.shutdown()


def reached(trace: Path, point: str) -> list[int]:
    """The pids of the trace's lines for ``point``, in the order the points were reached."""
    if not trace.exists():
        return []
    lines = [line.split() for line in trace.read_text().splitlines()]
    return [int(words[1]) for words in lines if len(words) == 3 and words[0] == point]


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 600,
    alive: Callable[[], bool] = lambda: True,
    diagnose: Callable[[], str] = lambda: "",
    every: float = 0.1,
):
    """``predicate()``'s first truthy value, polled every ``every`` s; fails, with what ``diagnose()``
    says, once ``alive()`` is false (the work ended without it) or after ``timeout`` s (a generous
    bound on an event, not a window a test's result depends on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert alive(), f"the work ended while waiting for {what}\n{diagnose()}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}\n{diagnose()}"
        time.sleep(every)


def wait_for_point(trace: Path, point: str, timeout: float = 600, alive: Callable[[], bool] = lambda: True) -> int:
    """The pid of the first process that reached ``point`` (a line in the trace), once one has."""
    return wait_until(lambda: reached(trace, point), f"a process to reach {point}", timeout, alive)[0]


def marker(trace: Path, point: str, kind: str = "once") -> Path:
    """``TRACE.POINT.once`` (written by the process a ``hang-once``/``pause-once`` holds) or ``.go``."""
    return trace.with_name(f"{trace.name}.{point}.{kind}")


def wait_for_marker(
    trace: Path,
    point: str,
    timeout: float = 600,
    alive: Callable[[], bool] = lambda: True,
    diagnose: Callable[[], str] = lambda: "",
) -> int:
    """The pid of the process held at ``point`` (its ``hang-once``/``pause-once`` marker), once it is there."""
    held = marker(trace, point)
    text = wait_until(
        lambda: held.exists() and held.read_text().strip(), f"a process held at {point}", timeout, alive, diagnose
    )
    return int(text)


def release(trace: Path, point: str) -> None:
    """Let the process a ``pause-once`` holds at ``point`` go on."""
    marker(trace, point, "go").touch()


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The script ``benchmarks/NAME.py`` as a module (its helpers, standin and simulated, importable by name)."""
    import importlib.util
    import sys

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
