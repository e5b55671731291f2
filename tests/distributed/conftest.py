"""Fixtures for the distributed tests: a Ray cluster of several nodes on this machine."""

from __future__ import annotations

import os
import time

import pytest


@pytest.fixture(scope="module")
def ray_multinode():
    """A 2-node Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``), 1 CPU per node, the driver connected.

    Yields the ``Cluster`` (``cluster.worker_nodes``, ``cluster.remove_node(node)``); shut down after the module.
    """
    ray = pytest.importorskip("ray")
    import ray._private.ray_constants
    import ray._private.utils
    from ray.cluster_utils import Cluster

    from raydal.distributed.score import release_scoring_actors

    # warm scoring actors of an earlier module's Ray session must not stand in for this cluster's
    release_scoring_actors()
    if ray.is_initialized():
        ray.shutdown()
    common = dict(num_cpus=1, object_store_memory=100 * 2**20, node_ip_address="127.0.0.1")
    with pytest.MonkeyPatch.context() as mp:
        # Ray turns "127.0.0.1" into the machine's address when connecting; this keeps every node,
        # worker and the driver on the loopback address.
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
        # Cluster writes its address to /tmp/ray/ray_current_cluster, where every plain ray.init() on
        # this machine (other test runs, other users) would find it and try to join: keep it private.
        mp.setattr(ray._private.utils, "write_ray_address", lambda *a, **kw: None)
        cluster = Cluster(
            initialize_head=True,
            head_node_args=dict(common, include_dashboard=False, temp_dir=f"/tmp/raydal-mn-{os.getpid()}"),
        )
        cluster.add_node(**common)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        deadline = time.time() + 60  # both nodes visible with their CPUs before anything is placed
        while sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0) < 2:
            if time.time() > deadline:
                pytest.fail("the second node of the test cluster did not come up within 60 s")
            time.sleep(0.2)
        try:
            yield cluster
        finally:
            from raydal.distributed.score import release_scoring_actors

            release_scoring_actors()
            ray.shutdown()
            cluster.shutdown()
