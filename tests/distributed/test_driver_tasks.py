"""The Ray executor's driver loads no model: evaluation and the random strategy's probabilities run in Ray tasks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from raydal.config import ALConfig

pytestmark = pytest.mark.ray


def test_evaluate_and_predict_fallbacks_run_in_tasks_with_the_local_results(
    ray_local, tiny_shards, tmp_path, monkeypatch
):
    import raydal.distributed.executor as ray_executor
    from raydal.al.executor import LocalExecutor

    cfg = ALConfig(
        dataset="ucmerced",
        shards_dir=str(tiny_shards),
        state_dir=str(tmp_path / "state"),
        strategy="random",
        b=4,
        initial_labeled=8,
        seed=0,
        backbone="smallcnn",
        executor="ray",
        score_batch_size=16,
        train={"epochs": 1, "batch_size": 8, "lr": 0.05},
    )
    local = LocalExecutor(cfg)
    pool = local.pool_ids()
    checkpoint = local.train(pool[:8].tolist(), {}, str(tmp_path / "ckpt"), None, seed=0)

    call = ray_executor._local_call
    marks = tmp_path / "ran-in"
    marks.mkdir()

    def spy(*args):  # runs where the task runs: leaves that process's id behind
        (marks / f"{os.getpid()}-{args[1]}").touch()
        return call(*args)

    monkeypatch.setattr(ray_executor, "_local_call", spy)
    executor = ray_executor.RayExecutor(cfg)  # a fresh driver: no fused run to take results from
    metrics = executor.evaluate(checkpoint, "test")
    assert metrics["micro_f1"] == pytest.approx(local.evaluate(checkpoint, "test")["micro_f1"])
    unlabeled = pool[8:]
    got = executor.query(checkpoint, unlabeled, pool[:8].tolist(), 4, None, seed=3)
    want = local.query(checkpoint, unlabeled, pool[:8].tolist(), 4, None, seed=3)
    assert got.selected == want.selected
    assert set(got.selected_probs) == set(got.selected)
    for sid in got.selected:
        np.testing.assert_allclose(got.selected_probs[sid], want.selected_probs[sid], rtol=1e-5, atol=1e-6)
    ran = [p.name.split("-", 1) for p in marks.iterdir()]
    assert sorted(method for _, method in ran) == ["_predict_missing", "evaluate"]
    assert str(os.getpid()) not in {pid for pid, _ in ran}  # both ran in Ray worker processes
