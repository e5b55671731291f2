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


@pytest.fixture(scope="module")
def scoring_setup(tiny_shards, tmp_path_factory):
    """(manifest, model, checkpoint folder, labeled ids): a seeded untrained SmallCNN with a loss head,
    and labeled ids scattered over the shard files."""
    import torch

    from raydal.data.shards import load_manifest, read_ids
    from raydal.models import create_model, save_checkpoint

    manifest = load_manifest(tiny_shards)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands, ll=True).eval()
    ckpt = save_checkpoint(tmp_path_factory.mktemp("score_ckpt") / "ckpt", model)
    labeled = set(read_ids(manifest, "pool")[3:60:5].tolist())
    return manifest, model, ckpt, labeled
