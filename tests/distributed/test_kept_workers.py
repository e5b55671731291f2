"""One Ray Train worker group kept for a whole AL run (``keep_workers``, ``raydal.distributed.workers``).

The module runs the same 2-round AL run twice on a 2-CPU local Ray: with the group kept, its
worker killed in the middle of the second round's training, and with a new group every round.
The kept run must select and score exactly as the other, resume the killed round from that
round's start (never from the first round's checkpoint), keep a single Ray Train run for the
whole AL run, and hand its CPUs back when the run ends (checked before the second run starts).
"""

from __future__ import annotations

import pytest

from raydal.config import ALConfig

pytestmark = pytest.mark.ray

EPOCHS = 8
#: Killed at its 12th epoch: the kept worker's 4th epoch of round 2 (a process of a new group
#: per round never gets there: 8 epochs each).
FAULTS = f"train:epoch@{EPOCHS + 4}=kill"


def _config(shards, state_dir, keep: bool) -> ALConfig:
    return ALConfig(
        dataset="ucmerced",
        shards_dir=str(shards),
        state_dir=str(state_dir),
        strategy="mge+clustering",
        b=10,
        m=2,
        initial_labeled=30,
        iterations=1,
        backbone="smallcnn",
        train=dict(epochs=EPOCHS, batch_size=8, lr=0.025),
        executor="ray",
        keep_workers=keep,
    )


def _run(config: ALConfig):
    from raydal.al.executor import get_executor
    from raydal.al.loop import ActiveLearner

    learner = ActiveLearner(config, get_executor(config.executor, config), log=lambda s: None)
    learner.run()
    return learner.state


@pytest.fixture(scope="module")
def runs(ray_faults, tiny_shards, tmp_path_factory):
    import ray
    from support import reached, wait_until

    root = tmp_path_factory.mktemp("kept")
    kept = _run(_config(tiny_shards, root / "kept", keep=True))
    kept_epochs = reached(ray_faults, "train:epoch")
    # the run has ended: the group's CPUs are free again (before the other run asks for any)
    wait_until(lambda: ray.available_resources().get("CPU") == 2.0, "the kept group's CPUs to come back", 120)
    fresh = _run(_config(tiny_shards, root / "fresh", keep=False))
    return root, kept, kept_epochs, fresh


def test_a_kept_group_selects_and_scores_as_a_group_per_round(runs):
    _, kept, _, fresh = runs
    assert [h["iteration"] for h in kept.history] == [0, 1]
    assert kept.labeled_ids() == fresh.labeled_ids()
    for got, want in zip(kept.history, fresh.history):
        assert got.get("selected") == want.get("selected")
        assert got["test"]["micro_f1"] == want["test"]["micro_f1"]
        assert got["test"]["loss"] == pytest.approx(want["test"]["loss"], rel=1e-6)


def test_a_killed_worker_resumes_its_round_from_that_rounds_start(runs):
    _, _, epochs, _ = runs
    first, second = list(dict.fromkeys(epochs))  # the kept group's worker, then the restarted group's
    assert epochs.count(first) == EPOCHS + 4  # round 1, then 4 epochs of round 2 before the kill
    # Round 2 had no checkpoint of its own yet (every 10 epochs, and the last): the restarted worker
    # trains it from the start, not from round 1's last checkpoint (which would leave 0 epochs).
    assert epochs.count(second) == EPOCHS


def test_one_ray_train_run_holds_the_whole_al_run(runs):
    root, _, _, _ = runs
    storage = root / "kept" / "ray"  # the state dir's ray/ (no storage_path set)
    assert len(list(storage.iterdir())) == 1
    # checkpoints named by job: each round's last epoch, the last two kept
    assert sorted(p.name for p in storage.glob("*/job-*")) == [
        f"job-00001-epoch-{EPOCHS:05d}",
        f"job-00002-epoch-{EPOCHS:05d}",
    ]
    # a group per round: one Ray Train run under each round's checkpoint folder, none in the state dir
    assert not (root / "fresh" / "ray").exists()
    assert len(list((root / "fresh").glob("checkpoints/iter-*/ray/*"))) == 2
