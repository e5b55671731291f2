"""Fixtures of the reliability suite (helpers live in rel_helpers.py)."""

from __future__ import annotations

import os

import pytest
from rel_helpers import read_state, run_job


@pytest.fixture(scope="session")
def reference_run(tiny_shards, tmp_path_factory) -> dict:
    """The uninterrupted run every faulted run must end equal to; ``trace``: points it reached."""
    state_dir = tmp_path_factory.mktemp("reference") / "state"
    trace = state_dir.parent / "trace.txt"
    done = run_job(tiny_shards, state_dir, trace=trace)
    assert done.returncode == 0, done.stdout + done.stderr
    points = [line.split()[0] for line in trace.read_text().splitlines()]
    return {"state": read_state(state_dir), "points": points, "state_dir": state_dir}


#: Fault points armed on the cluster's worker nodes: the first process that scores a batch, or that
#: reports its 2nd training epoch, hangs there; the test then removes that process's node.
NODE_FAULTS = "score:batch=hang-once,train:epoch@2=hang-once"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A simulated 3-node Ray cluster on 127.0.0.1: a head without CPUs (the driver, as on a real
    cluster) and 2 workers of 2 CPUs each, armed with ``NODE_FAULTS``; ``add_worker()`` replaces a
    removed one."""
    pytest.importorskip("ray")
    from raydal.distributed.session import simulated_cluster

    trace = tmp_path_factory.mktemp("cluster") / "trace.txt"
    env = {"RAYDAL_FAULT": NODE_FAULTS, "RAYDAL_FAULT_TRACE": str(trace)}
    with simulated_cluster(2, 2, f"/tmp/raydal-rel-{os.getpid()}", head_cpus=0, worker_env=env, dashboard=True) as sim:
        yield {"cluster": sim.cluster, "trace": trace, "add_worker": sim.add_worker}


def node_of(cluster, pid: int):
    """The worker node (``ray._private.node.Node``) whose raylet started the process ``pid``."""
    import psutil

    raylets = {n.all_processes["raylet"][0].process.pid: n for n in cluster.worker_nodes}
    proc = psutil.Process(pid)
    while proc is not None:
        if proc.pid in raylets:
            return raylets[proc.pid]
        proc = proc.parent()
    raise AssertionError(f"process {pid} does not belong to a worker node of the cluster")


def wait_for_marker(trace, point: str, timeout: float = 600, alive=lambda: True) -> int:
    """The pid of the process hanging at ``point`` (its ``hang-once`` marker), once it is there."""
    import time

    marker = trace.parent / f"{trace.name}.{point}.once"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text())
        assert alive(), f"the work ended before any process reached {point}"
        time.sleep(0.2)
    raise AssertionError(f"no process reached {point} in {timeout}s")
