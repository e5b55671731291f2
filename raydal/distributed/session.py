"""Connecting to Ray: a running cluster when there is one, else an embedded local Ray."""

from __future__ import annotations

import os
import socket
import tempfile

from raydal.constants import (
    ENV_RAY_ADDRESS,
    ENV_RAY_API_SERVER_ADDRESS,
    ENV_RAY_DATA_DISABLE_PROGRESS_BARS,
    ENV_RAY_TMPDIR,
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
    temp = os.environ.get(ENV_RAY_TMPDIR, os.path.join(tempfile.gettempdir(), "raydal-ray"))
    # Ray 2.60 swaps "127.0.0.1" for the machine's address unless clusters are off for this driver.
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
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

    Ray Data's read tasks need that CPU: on 2 cores, 2 x 1-CPU workers next to a read
    task wait forever (ray-notes).
    """
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.25, min(1.0, (total - 1.0) / n))
