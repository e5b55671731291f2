"""The Ray executor: one Ray Train job per AL iteration trains, evaluates and scores; resume stays exact.

Here on a worker group started for the iteration (``keep_workers=False``); a group kept for the
whole run is tests/distributed/test_kept_workers.py's (the jobs are the same)."""

import shutil
from pathlib import Path

import pytest

from raydal.config import ALConfig
from raydal.data.shards import load_manifest

pytestmark = pytest.mark.ray


def _config(shards, state_dir) -> ALConfig:
    return ALConfig(
        dataset="ucmerced",
        shards_dir=str(shards),
        state_dir=str(state_dir),
        strategy="mge+clustering",
        b=5,
        m=2,
        initial_labeled=10,
        iterations=1,
        seed=0,
        backbone="smallcnn",
        warm_start=True,
        executor="ray",
        num_workers=2,
        cpus_per_worker=0.5,
        score_batch_size=16,
        train={"epochs": 2, "batch_size": 8, "lr": 0.05},
        keep_workers=False,
    )


def test_one_worker_group_start_per_iteration_and_exact_resume(ray_local, tiny_shards, tmp_path, monkeypatch):
    import raydal.distributed.score as score_module
    import raydal.distributed.train as train_module
    from raydal.al.executor import LocalExecutor
    from raydal.al.loop import ActiveLearner
    from raydal.distributed.executor import POOL_SCORES_FILE, RayExecutor

    calls = {"fit": 0, "score_pool_ray": 0, "evaluate_in_driver": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    # One train_with_ray = one TorchTrainer.fit (in a Ray task since the driver imports no torch).
    monkeypatch.setattr(train_module, "train_with_ray", counted("fit", train_module.train_with_ray))
    monkeypatch.setattr(score_module, "score_pool_ray", counted("score_pool_ray", score_module.score_pool_ray))
    monkeypatch.setattr(LocalExecutor, "evaluate", counted("evaluate_in_driver", LocalExecutor.evaluate))

    def learner(state_dir):
        cfg = _config(tiny_shards, state_dir)
        return ActiveLearner(cfg, RayExecutor(cfg), log=lambda s: None)

    first = learner(tmp_path / "a")
    first.step()  # init: 10 random labels
    assert first.state.phase == "train"
    first.step()  # train + evaluate, and the pool scored in the same run
    assert first.state.phase == "query"
    assert calls == {"fit": 1, "score_pool_ray": 0, "evaluate_in_driver": 0}
    record = first.state.history[-1]
    manifest = load_manifest(tiny_shards)
    assert record["val"]["n_samples"] == manifest.splits["val"]["count"]
    assert record["test"]["n_samples"] == manifest.splits["test"]["count"]
    assert (Path(record["checkpoint"]).parent / POOL_SCORES_FILE).is_file()
    assert len(list((Path(record["checkpoint"]).parent / "ray").iterdir())) == 1  # its own Ray Train run
    assert not (tmp_path / "a" / "ray").exists()  # none kept in the state dir
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the state a job killed right now leaves behind
    shutil.copytree(tmp_path / "a", tmp_path / "c")

    first.step()  # query + label: the scores come from the training run
    selected = first.state.history[-1]["selected"]
    assert len(selected) == 5 and first.state.phase == "train"
    assert calls == {"fit": 1, "score_pool_ray": 0, "evaluate_in_driver": 0}  # one worker-group start in all

    # A restarted job (new executor, empty memory) resumes the query from the saved scores.
    resumed = learner(tmp_path / "b")
    assert resumed.state.phase == "query"
    resumed.step()
    assert resumed.state.history[-1]["selected"] == selected
    assert calls["score_pool_ray"] == 0 and calls["fit"] == 1

    # Without them it scores with Ray Data actors, and selects the same samples.
    (Path(record["checkpoint"]).parent / POOL_SCORES_FILE).unlink()
    rescored = learner(tmp_path / "c")
    rescored.step()
    assert calls["score_pool_ray"] == 1
    assert rescored.state.history[-1]["selected"] == selected
    # the query diagnostics are the same whichever path scored (training run, saved scores, actors)
    diagnostics = [learner.state.history[-1]["query_diagnostics"] for learner in (first, resumed, rescored)]
    assert diagnostics[0] == diagnostics[1] == diagnostics[2]
