"""A worker node removed from a (simulated) Ray cluster while the pool is scored and while a model
is trained: the work completes on the remaining nodes with the same result as without the fault."""

from __future__ import annotations

import threading

import pytest
from rel_helpers import node_of
from support import marker, wait_for_marker

from raydal.data.shards import load_manifest, read_ids
from raydal.models import ModelSpec, read_checkpoint_meta
from raydal.query import get_strategy
from raydal.training import TrainConfig, train_in_process

pytestmark = [pytest.mark.reliability, pytest.mark.ray]


def _in_thread(fn):
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised by the test
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _ensure_two_workers(ray_cluster):
    cluster = ray_cluster["cluster"]
    while len(cluster.worker_nodes) < 2:
        ray_cluster["add_worker"]()
    cluster.wait_for_nodes()


def test_worker_node_removed_while_scoring(ray_cluster, tiny_shards, tmp_path):
    from raydal.data.shards import read_split
    from raydal.distributed.score import score_pool_ray

    _ensure_two_workers(ray_cluster)
    manifest = load_manifest(tiny_shards)
    pool = list(read_ids(manifest, "pool"))
    labeled = pool[:20]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    data = read_split(manifest, "pool", ids=labeled)
    ckpt = train_in_process(spec, TrainConfig(epochs=1, batch_size=8, seed=0), data, out_dir=tmp_path / "m")
    strategy, b, m = get_strategy("mge+clustering"), 5, 3

    def query():
        scores = score_pool_ray(
            ckpt.checkpoint_dir,
            tiny_shards,
            labeled,
            strategy,
            k=strategy.candidate_count(b, m),
            concurrency=2,
            batch_size=4,
            num_cpus=0.5,
        )
        unlabeled = sorted(set(pool) - set(labeled))
        return scores, strategy.select(b, scores=scores, pool_ids=unlabeled, m=m, seed=0)

    thread, out = _in_thread(query)
    pid = wait_for_marker(ray_cluster["trace"], "score:batch", alive=thread.is_alive)
    ray_cluster["cluster"].remove_node(node_of(ray_cluster["cluster"], pid))  # an actor is mid-batch there
    thread.join(timeout=600)
    assert not thread.is_alive(), "scoring did not finish after the node was removed"
    assert "error" not in out, out.get("error")
    scores, selected = out["result"]

    expected_scores, expected = query()  # the same query, no fault (the hang fires once)
    assert sorted(scores.ids) == sorted(expected_scores.ids) == sorted(set(pool) - set(labeled))  # every row once
    assert list(selected) == list(expected)


def test_worker_node_removed_while_scoring_on_ray_data(ray_cluster, tiny_shards, tmp_path):
    """``score_workers`` > 0: Ray Data restarts the lost actor and re-runs the lost reads; the scores
    are still the in-process ones, bit for bit."""
    from raydal.data.shards import iter_batches, read_split
    from raydal.distributed.score_data import score_pool_data
    from raydal.models import load_checkpoint
    from raydal.query import score_pool

    _ensure_two_workers(ray_cluster)
    trace = ray_cluster["trace"]
    marker(trace, "score:batch").unlink(missing_ok=True)  # re-arm: the first actor hangs
    manifest = load_manifest(tiny_shards)
    pool = list(read_ids(manifest, "pool"))
    labeled = pool[:20]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    ckpt = train_in_process(
        spec,
        TrainConfig(epochs=1, batch_size=8, seed=0),
        read_split(manifest, "pool", ids=labeled),
        out_dir=tmp_path / "m",
    ).checkpoint_dir
    strategy, b, m = get_strategy("mge+clustering"), 5, 3
    k = strategy.candidate_count(b, m)
    thread, out = _in_thread(
        lambda: score_pool_data(ckpt, tiny_shards, labeled, strategy, k, workers=2, batch_size=4, num_cpus=0.5)
    )
    pid = wait_for_marker(trace, "score:batch", alive=thread.is_alive)
    ray_cluster["cluster"].remove_node(node_of(ray_cluster["cluster"], pid))  # an actor is mid-batch there
    thread.join(timeout=600)
    assert not thread.is_alive(), "scoring did not finish after the node was removed"
    assert "error" not in out, out.get("error")
    got = out["result"]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the actors (num_cpus 0.5 -> 1 thread): float sums follow the thread split
    try:
        want = score_pool(load_checkpoint(ckpt), iter_batches(manifest, "pool", 4, exclude=labeled), strategy, k)
    finally:
        torch.set_num_threads(threads)
    assert list(got.ids) == list(want.ids) == sorted(set(pool) - set(labeled))  # every row once
    assert (got.probs == want.probs).all() and list(got.cand_ids) == list(want.cand_ids)
    unlabeled = sorted(set(pool) - set(labeled))
    assert strategy.select(b, scores=got, pool_ids=unlabeled, m=m, seed=0) == strategy.select(
        b, scores=want, pool_ids=unlabeled, m=m, seed=0
    )


def test_worker_node_removed_while_training(ray_cluster, tiny_shards, tmp_path):
    from raydal.distributed.train import train_with_ray

    _ensure_two_workers(ray_cluster)
    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:40]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    epochs = 4
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.025, seed=0)

    thread, out = _in_thread(
        lambda: train_with_ray(
            spec,
            cfg,
            tiny_shards,
            labeled,
            tmp_path / "train",
            num_workers=2,
            cpus_per_worker=0.5,
            max_failures=2,
            validate=False,
            run_name="node-loss",
            checkpoint_every=1,
        )
    )  # checkpoint every epoch (default: every 10): the kill at epoch 2 resumes
    pid = wait_for_marker(ray_cluster["trace"], "train:epoch", alive=thread.is_alive)  # epoch 2 reported
    ray_cluster["cluster"].remove_node(node_of(ray_cluster["cluster"], pid))
    thread.join(timeout=900)
    assert not thread.is_alive(), "training did not finish after the node was removed"
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1))  # resumed, not restarted
    assert read_checkpoint_meta(result.checkpoint_dir)["extra"]["epoch"] == epochs
