"""Fixtures of the reliability suite (helpers live in rel_helpers.py)."""

from __future__ import annotations

import os

import pytest
from rel_helpers import read_state, run_job
from support import fault_env


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
    env = fault_env(trace, NODE_FAULTS)
    with simulated_cluster(2, 2, f"/tmp/raydal-rel-{os.getpid()}", head_cpus=0, worker_env=env, dashboard=True) as sim:
        yield {"cluster": sim.cluster, "trace": trace, "add_worker": sim.add_worker}
