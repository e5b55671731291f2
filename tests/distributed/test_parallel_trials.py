"""``parallel_trials``: a comparison's two arms run at once in their own driver actors, with the
results of one after another."""

from __future__ import annotations

import pytest
from support import reached

from raydal.al.experiment import run_comparison
from raydal.config import ALConfig

pytestmark = pytest.mark.ray

FAULTS = None  # the ray_faults fixture only traces the points (which process reached which, in order)


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
        seed=3,
        backbone="smallcnn",
        executor="ray",
        num_workers=1,
        cpus_per_worker=0.5,
        train={"epochs": 2, "batch_size": 8, "lr": 0.05},
    )


def test_the_arms_run_at_once_with_the_results_of_one_after_another(ray_faults, tiny_shards, tmp_path):
    from raydal.distributed.driver import run_trial_on_ray, run_trials_on_ray

    at_once = run_comparison(
        _config(tiny_shards, tmp_path / "par" / "mge"), 1, run_trial_on_ray, run_many=run_trials_on_ray, parallel=2
    )
    # both driver actors were in their first training before either had finished one: they ran at once
    points = [line.split() for line in ray_faults.read_text().splitlines()]
    first_end = next(k for k, words in enumerate(points) if words[0] == "train:end")
    assert len({int(words[1]) for words in points[:first_end] if words[0] == "train:start"}) == 2
    assert len(set(reached(ray_faults, "train:start"))) == 2  # one driver process per arm

    one_by_one = run_comparison(_config(tiny_shards, tmp_path / "seq" / "mge"), 1, run_trial_on_ray)
    for arm in ("strategy", "baseline"):
        assert [s["strategy"] for s in at_once[arm]] == [s["strategy"] for s in one_by_one[arm]]
        assert [s["curve"] for s in at_once[arm]] == [s["curve"] for s in one_by_one[arm]]
    assert at_once["difference"] == one_by_one["difference"]
