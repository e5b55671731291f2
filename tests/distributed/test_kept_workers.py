"""Parallel trials (``parallel_trials``) on worker groups kept for their runs (``keep_workers``).

One comparison (MGE + clustering against random, 2 rounds each) runs twice on a 2-CPU local Ray,
each arm in its own driver actor on one Ray Train worker group kept for its whole run:

- its two arms at once, on relative locations (as the demo's), each arm's worker killed in the
  middle of the second round's training;
- one arm after the other, nothing killed.

The first must give the second's results exactly (so running arms at once and restarting a
killed group change nothing), run the arms at once, resume each killed round from that round's
start (never from the first round's checkpoint), keep one Ray Train run per arm and hand every
CPU back when the runs end. A group per round (``keep_workers=False``) is
tests/distributed/test_executor_ray.py's; both run the same jobs (``_run_job``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raydal.config import ALConfig

pytestmark = pytest.mark.ray

EPOCHS = 2
#: Each kept worker is killed at its 3rd epoch: the 1st of round 2 (a process of a new group per
#: round never gets there: 2 epochs each).
FAULTS = f"train:epoch@{EPOCHS + 1}=kill"


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
        train={"epochs": EPOCHS, "batch_size": 8, "lr": 0.05},
        keep_workers=True,  # the default, named: this module's subject
    )


@pytest.fixture(scope="module")
def comparisons(ray_faults, tiny_shards, tmp_path_factory):
    import ray
    from support import wait_until

    from raydal.al.experiment import run_comparison
    from raydal.distributed.driver import run_trial_on_ray, run_trials_on_ray

    root = tmp_path_factory.mktemp("kept")
    # relative locations, as the demo's (Ray Train runs its workers in a folder of its own; the
    # driver actors share this process's working directory)
    kept = _config(os.path.relpath(tiny_shards), os.path.relpath(root / "at_once" / "mge"))
    at_once = run_comparison(kept, 1, run_trial_on_ray, run_many=run_trials_on_ray, parallel=2)
    trace = ray_faults.read_text().splitlines()
    # the runs have ended: their groups' CPUs are free again (before the other comparison asks)
    wait_until(lambda: ray.available_resources().get("CPU") == 2.0, "the kept groups' CPUs to come back", 120)
    one_by_one = run_comparison(_config(tiny_shards, root / "one_by_one" / "mge"), 1, run_trial_on_ray)
    return dict(root=root, at_once=at_once, one_by_one=one_by_one, trace=[line.split() for line in trace])


def _pids(trace, point: str) -> list[int]:
    return [int(words[1]) for words in trace if words[0] == point]


def test_the_arms_at_once_on_kept_groups_give_the_results_of_one_after_another(comparisons):
    from raydal.al.experiment import baseline_state_dir
    from raydal.al.state import StateStore

    at_once, one_by_one, root = comparisons["at_once"], comparisons["one_by_one"], comparisons["root"]
    for arm in ("strategy", "baseline"):
        assert [s["strategy"] for s in at_once[arm]] == [s["strategy"] for s in one_by_one[arm]]
        assert [s["curve"] for s in at_once[arm]] == [s["curve"] for s in one_by_one[arm]]
    assert at_once["difference"] == one_by_one["difference"]

    def state(run: str, arm: str):
        mge = str(root / run / "mge")
        return StateStore(mge if arm == "strategy" else baseline_state_dir(mge, "random")).load()

    for arm in ("strategy", "baseline"):
        assert len(state("at_once", arm).history) == 2  # rounds 0 and 1
        assert state("at_once", arm).labeled_ids() == state("one_by_one", arm).labeled_ids()


def test_the_arms_ran_at_once(comparisons):
    trace = comparisons["trace"]
    # both driver actors were in their first training before either had finished one
    first_end = next(k for k, words in enumerate(trace) if words[0] == "train:end")
    assert len(set(_pids(trace[:first_end], "train:start"))) == 2
    assert len(set(_pids(trace, "train:start"))) == 2  # one driver process per arm


def test_each_killed_worker_resumes_its_round_from_that_rounds_start(comparisons):
    epochs = _pids(comparisons["trace"], "train:epoch")
    counts = sorted(epochs.count(pid) for pid in set(epochs))
    # per arm: the kept worker (round 1, then 1 epoch of round 2 before the kill) and the restarted
    # group's, which trains round 2 from its start: round 2 had no checkpoint of its own yet (every
    # 10 epochs, and the last), and round 1's last one would have left it 0 epochs to train
    assert counts == [EPOCHS, EPOCHS, EPOCHS + 1, EPOCHS + 1]


def test_one_ray_train_run_per_arm_in_the_state_dir(comparisons):
    from raydal.al.experiment import baseline_state_dir

    mge = comparisons["root"] / "at_once" / "mge"
    for state_dir in (mge, Path(baseline_state_dir(str(mge), "random"))):
        storage = state_dir / "ray"  # the state dir's ray/ (no storage_path set)
        assert len(list(storage.iterdir())) == 1
        # checkpoints named by job, each round's last epoch, the last two kept (random's prediction
        # for its export, a job of its own between its rounds, reports no checkpoint)
        assert [p.name.rpartition("-epoch-")[2] for p in sorted(storage.glob("*/job-*"))] == [f"{EPOCHS:05d}"] * 2
        assert not list(state_dir.glob("checkpoints/iter-*/ray"))  # none beside a round's checkpoint
