"""Fixtures for the distributed tests: a Ray cluster of several nodes on this machine."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def ray_multinode():
    """A 2-node Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``), 1 CPU per node, the driver connected.

    Yields the ``Cluster`` (``cluster.worker_nodes``, ``cluster.remove_node(node)``); shut down after the module.
    """
    pytest.importorskip("ray")
    from raydal.distributed.score import release_scoring_actors
    from raydal.distributed.session import simulated_cluster

    # warm scoring actors of an earlier module's Ray session must not stand in for this cluster's
    release_scoring_actors()
    with simulated_cluster(1, 1, f"/tmp/raydal-mn-{os.getpid()}", object_store_mb=100) as sim:
        try:
            yield sim.cluster
        finally:
            release_scoring_actors()
