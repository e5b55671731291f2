"""``score_workers`` > 0: the Ray executor trains on its workers and scores the pool on Ray Data actors."""

from __future__ import annotations

import numpy as np
import pytest

from raydal.config import ALConfig

pytestmark = pytest.mark.ray


def test_an_iteration_scores_on_ray_data_and_selects_what_in_process_scoring_selects(
    ray_local, tiny_shards, tmp_path, monkeypatch
):
    import raydal.distributed.score as warm_module
    import raydal.distributed.score_data as data_module
    import raydal.distributed.train as train_module
    from raydal.al.executor import LocalExecutor
    from raydal.al.loop import ActiveLearner
    from raydal.constants import POOL_SCORES_FILE
    from raydal.distributed.executor import RayExecutor

    calls: dict[str, list] = {"train_with_ray": [], "score_pool_data": [], "score_pool_ray": []}

    def spy(owner, name, record):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            calls[name].append(record(args, kwargs, out))
            return out

        monkeypatch.setattr(owner, name, wrapper)

    spy(train_module, "train_with_ray", lambda a, kw, out: kw.get("score"))
    spy(data_module, "score_pool_data", lambda a, kw, out: (kw["workers"], kw["min_workers"]))
    spy(warm_module, "score_pool_ray", lambda a, kw, out: None)
    queries: list = []
    query = RayExecutor.query
    monkeypatch.setattr(
        RayExecutor, "query", lambda self, *a, **kw: queries.append((kw, query(self, *a, **kw))) or queries[-1][1]
    )
    cfg = ALConfig(
        dataset="ucmerced",
        shards_dir=str(tiny_shards),
        state_dir=str(tmp_path / "state"),
        strategy="mge+clustering",
        b=5,
        m=2,
        initial_labeled=10,
        iterations=1,
        seed=0,
        backbone="smallcnn",
        executor="ray",
        num_workers=1,
        cpus_per_worker=0.5,
        score_workers=2,
        score_workers_min=1,
        score_batch_size=16,
        train={"epochs": 1, "batch_size": 8, "lr": 0.05},
    )
    learner = ActiveLearner(cfg, RayExecutor(cfg), log=lambda s: None)
    learner.step()  # init
    learner.step()  # train on 1 worker + evaluate; the pool is not scored in the training run
    assert calls["train_with_ray"] == [None]
    assert not list((tmp_path / "state").rglob(POOL_SCORES_FILE))
    learner.step()  # query: on 1-2 Ray Data actors
    assert calls["score_pool_data"] == [(2, 1)] and calls["score_pool_ray"] == []
    ((args, got),) = queries
    assert len(got.selected) == 5 and got.score_seconds > 0

    # The same query in this process: the in-process batches, the same probabilities, the same selection.
    want = LocalExecutor(cfg).query(**args)
    assert got.selected == want.selected
    np.testing.assert_array_equal(got.pool_ids, want.pool_ids)
    np.testing.assert_array_equal(got.pool_probs, want.pool_probs)
