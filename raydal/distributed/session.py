"""Connecting to Ray: a running cluster when there is one, else an embedded local Ray."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from raydal.constants import (
    EMBEDDED_HEALTH_CHECK_INTERVAL_S,
    ENV_RAY_ADDRESS,
    ENV_RAY_API_SERVER_ADDRESS,
    ENV_RAY_DATA_DISABLE_PROGRESS_BARS,
    ENV_RAY_TMPDIR,
    ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL,
    ENV_RAY_TRAIN_PREEMPTION_WATCHER,
)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> str:
    """Initialise Ray once; returns ``"cluster"`` or ``"embedded"``.

    Under ``ray job submit`` (``RAY_ADDRESS`` set) or with ``address`` given, this
    connects to that cluster. Otherwise it starts an embedded local Ray with this
    machine's CPUs, every port of it (dashboard included) on 127.0.0.1.
    """
    import ray

    if ray.is_initialized():
        return "cluster" if (address or os.environ.get(ENV_RAY_ADDRESS)) else "embedded"
    address = address or os.environ.get(ENV_RAY_ADDRESS)
    if address:
        ray.init(address=address, log_to_driver=True)
        return "cluster"
    # Ray Data's progress bars flood a job's log; RAY_DATA_DISABLE_PROGRESS_BARS=0 brings them back.
    os.environ.setdefault(ENV_RAY_DATA_DISABLE_PROGRESS_BARS, "1")
    # One machine cannot be preempted; Ray Train's watcher is one actor more per fit and logs
    # a core_worker error line at each start.
    os.environ.setdefault(ENV_RAY_TRAIN_PREEMPTION_WATCHER, "0")
    # Ray Train's controller notices a finished (or started) worker group at its next poll, every
    # 2 s by default: on one machine a poll is cheap, and a 0.25 s period takes ~3 s off each AL
    # iteration of the demo (benchmarks/RESULTS.md, "Issue 18"). A worker is declared dead only
    # after its polls hang for RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S (10 min), whatever the period.
    os.environ.setdefault(ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL, EMBEDDED_HEALTH_CHECK_INTERVAL_S)
    temp = os.environ.get(ENV_RAY_TMPDIR, os.path.join(tempfile.gettempdir(), "raydal-ray"))
    # Ray 2.60 swaps "127.0.0.1" for the machine's address unless clusters are off for this driver.
    _ray_switch("ray._private.ray_constants", "ENABLE_RAY_CLUSTER")[0].ENABLE_RAY_CLUSTER = False
    # The dashboard serves the State API that Ray Train's placement-group cleaner polls. The
    # cleaner finds it through RAY_API_SERVER_ADDRESS (inherited by every Ray worker of this
    # instance); without it, it guesses, and fails with a traceback when another Ray instance
    # runs on the machine ("Found multiple active Ray instances").
    port = _free_port()
    os.environ[ENV_RAY_API_SERVER_ADDRESS] = f"http://127.0.0.1:{port}"
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        # loopback: every port of the embedded Ray (dashboard, job server, agents, metrics, core
        # gRPC) listens on 127.0.0.1 only (tests/reliability/test_listen_addresses.py)
        _node_ip_address="127.0.0.1",
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        _temp_dir=temp,
        logging_level="WARNING",
        configure_logging=True,
    )
    return "embedded"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_share_leaving_one_free(n: int) -> float:
    """CPUs for each of ``n`` actors or workers so one cluster CPU stays free, in [0.25, 1].

    Ray Data's read tasks need that CPU: on 2 cores, two 1-CPU workers that wait for a
    read task's data leave it no CPU to run on, and wait forever.
    """
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.25, min(1.0, (total - 1.0) / n))


def _ray_switch(module: str, attr: str) -> tuple[Any, Any]:
    """``(module, its current attr)`` for a Ray internal raydal switches; fails loudly where a Ray
    upgrade renamed it (the switch would otherwise silently do nothing)."""
    import importlib

    import ray

    owner = importlib.import_module(module)
    if not hasattr(owner, attr):
        raise RuntimeError(
            f"Ray {ray.__version__} has no {module}.{attr}, which raydal sets to keep local clusters "
            "on 127.0.0.1. Fix: install the Ray version pyproject.toml pins, or port "
            "raydal.distributed.session.loopback_cluster to this one."
        )
    return owner, getattr(owner, attr)


@contextlib.contextmanager
def loopback_cluster() -> Iterator[None]:
    """Keep the local clusters started inside (``ray.cluster_utils.Cluster``) and this driver on
    127.0.0.1, and their address out of ``/tmp/ray/ray_current_cluster`` (where any plain
    ``ray.init()`` on the machine would find and join them). Restores Ray's settings on exit.

    Ray 2.60 turns "127.0.0.1" into the machine's address unless ``ENABLE_RAY_CLUSTER`` is off;
    both switches are Ray internals, checked to exist (a Ray upgrade fails here, loudly).
    """
    constants, enabled = _ray_switch("ray._private.ray_constants", "ENABLE_RAY_CLUSTER")
    utils, write_address = _ray_switch("ray._private.utils", "write_ray_address")
    env = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    utils.write_ray_address = lambda *a, **kw: None
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = enabled
        utils.write_ray_address = write_address
        if env is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = env


@dataclass
class SimulatedCluster:
    """A multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``), the driver connected."""

    cluster: Any
    worker_args: dict[str, Any] = field(default_factory=dict)

    def add_worker(self, **overrides: Any):
        """Start one more worker node like the others (a removed node's replacement); returns it."""
        return self.cluster.add_node(**{**self.worker_args, **overrides})

    @property
    def address(self) -> str:
        return self.cluster.address


@contextlib.contextmanager
def simulated_cluster(
    workers: int,
    cpus: float,
    temp_dir: str,
    *,
    head_cpus: float | None = None,
    object_store_mb: int = 150,
    worker_env: dict[str, str] | None = None,
    dashboard: bool = False,
    runtime_env: dict[str, Any] | None = None,
    log_level: str = "WARNING",
    timeout_s: float = 60.0,
) -> Iterator[SimulatedCluster]:
    """A head and ``workers`` worker nodes of ``cpus`` logical CPUs each on 127.0.0.1 (the one
    simulated-cluster factory of the tests and benchmarks), the driver connected; shut down on exit.

    ``head_cpus``: the head's CPUs (default ``cpus``; 0 keeps work off the head, as on a real
    cluster). ``worker_env``: environment of the worker nodes' processes (e.g. ``RAYDAL_FAULT``).
    ``runtime_env``: the driver's job runtime env (``RAY_ADDRESS`` added). Waits until every node is up with its CPUs.
    """
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    common = dict(node_ip_address="127.0.0.1", object_store_memory=object_store_mb * 2**20)
    head = dict(
        common, num_cpus=cpus if head_cpus is None else head_cpus, temp_dir=temp_dir, include_dashboard=dashboard
    )
    if dashboard:
        head.update(dashboard_host="127.0.0.1", dashboard_port=0)
    worker_args = dict(common, num_cpus=cpus, **({"env_vars": worker_env} if worker_env else {}))
    with loopback_cluster():
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            sim = SimulatedCluster(cluster, worker_args)
            for _ in range(workers):
                sim.add_worker()
            cluster.wait_for_nodes()
            # RAY_ADDRESS: Ray Train's placement-group cleaner otherwise finds other Ray instances on the machine.
            env = dict(runtime_env or {})
            env["env_vars"] = {"RAY_ADDRESS": cluster.address, **env.get("env_vars", {})}
            ray.init(address=cluster.address, logging_level=log_level, runtime_env=env)
            want = (1 if head["num_cpus"] else 0) + (workers if cpus else 0)
            deadline = time.time() + timeout_s  # every node visible with its CPUs before anything is placed
            while sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0) < want:
                if time.time() > deadline:
                    raise RuntimeError(
                        f"the simulated cluster's {want} nodes with CPUs did not come up in {timeout_s:g} s"
                    )
                time.sleep(0.2)
            yield sim
        finally:
            ray.shutdown()
            Cluster.shutdown(cluster)  # the class's: a caller may have wrapped the instance's
