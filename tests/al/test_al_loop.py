"""The AL loop end to end, in process, on a tiny generated archive."""

import pytest

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.al.state import StateStore
from raydal.data.shards import load_manifest, read_ids
from raydal.exceptions import StateError
from raydal.query import list_strategies


@pytest.mark.parametrize("strategy", list_strategies())
def test_two_iterations_every_strategy(make_config, strategy):
    cfg = make_config(strategy=strategy)
    learner = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None)
    state = learner.run()
    manifest = load_manifest(cfg.shards_dir)
    pool = set(read_ids(manifest, "pool"))
    assert state.phase == "done"
    assert [h["n_labeled"] for h in state.history] == [10, 15, 20]  # grows by exactly b
    assert len(state.labeled) == 20 and set(state.labeled) <= pool  # never val/test ids
    for h in state.history[:-1]:
        assert len(h["selected"]) == len(set(h["selected"])) == 5
    by_iter = [sorted(i for i, r in state.labeled.items() if r["iteration"] == t) for t in range(3)]
    assert [len(x) for x in by_iter] == [10, 5, 5]
    assert by_iter[1] == sorted(state.history[0]["selected"])
    for h in state.history:
        for split in ("val", "test"):
            assert 0.0 <= h[split]["micro_f1"] <= 1.0 and 0.0 <= h[split]["macro_f1"] <= 1.0
        assert h["seconds"]["train"] > 0
    # the state on disk is what the learner holds
    assert StateStore(cfg.state_dir).load().state_dict() == state.state_dict()
    if strategy.startswith("tpd"):
        assert state.pool_probs_file is not None  # kept for the next round's TPD


def test_same_seed_same_selection_other_seed_differs(make_config, tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = make_config(state_dir=str(tmp_path / name), seed=seed, iterations=1)
        runs.append(ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run())
    assert runs[0].labeled == runs[1].labeled
    assert set(runs[0].labeled) != set(runs[2].labeled)


def test_step_by_step_resume_matches_uninterrupted(make_config, tmp_path):
    """A fresh learner on the same state dir after every step: same result as one run."""
    ref_cfg = make_config(state_dir=str(tmp_path / "ref"))
    ref = ActiveLearner(ref_cfg, LocalExecutor(ref_cfg), log=lambda s: None).run()
    cfg = make_config(state_dir=str(tmp_path / "resumed"))
    while ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).step():
        pass
    got = StateStore(cfg.state_dir).load()
    assert got.labeled == ref.labeled
    assert [h["selected"] for h in got.history[:-1]] == [h["selected"] for h in ref.history[:-1]]


def test_other_config_on_existing_state_is_refused_unless_forked(make_config):
    cfg = make_config(iterations=1)
    ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    other = make_config(iterations=1, strategy="ll+clustering")
    with pytest.raises(StateError, match=r"another config.*strategy.*--fork"):
        ActiveLearner(other, LocalExecutor(other), log=lambda s: None)
    forked = ActiveLearner(other, LocalExecutor(other), fork=True, log=lambda s: None)
    assert forked.state.config["strategy"] == "ll+clustering"


def test_more_iterations_extends_a_finished_run(make_config):
    cfg = make_config(iterations=1)
    ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    more = make_config(iterations=2)  # an execution field: no --fork needed
    state = ActiveLearner(more, LocalExecutor(more), log=lambda s: None).run()
    assert state.phase == "done" and [h["n_labeled"] for h in state.history] == [10, 15, 20]


def test_label_budget_caps_last_batch(make_config):
    cfg = make_config(iterations=None, label_budget=22, strategy="random")
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    assert [h["n_labeled"] for h in state.history] == [10, 15, 20, 22]


def test_human_mode_waits_for_labels(make_config):
    cfg = make_config(mode="human", iterations=1)
    learner = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None)
    state = learner.run()
    assert state.phase == "label" and learner.waiting_for_labels
    assert len(state.pending["ids"]) == 10 and state.labeled == {}
    assert not learner.step()


def test_the_loop_releases_the_executor_when_a_run_ends_waits_or_fails(make_config, tmp_path):
    """``Executor.release`` (the Ray executor's kept worker group) follows a run's last training,
    comes before a wait for labels, and follows a failed step; never between two trainings."""
    events: list[str] = []

    class Recording(LocalExecutor):
        fail = False

        def train(self, *args, **kwargs):
            events.append("train")
            if self.fail:
                raise RuntimeError("the training broke")
            return super().train(*args, **kwargs)

        def release(self):
            events.append("release")

    quiet = lambda s: None  # noqa: E731
    cfg = make_config(iterations=1)
    ActiveLearner(cfg, Recording(cfg), log=quiet).run()
    assert events[:2] == ["train", "train"] and set(events[2:]) == {"release"}

    events.clear()
    human = make_config(mode="human", state_dir=str(tmp_path / "human"))
    ActiveLearner(human, Recording(human), log=quiet).run()  # waits for the initial set's labels
    assert events and set(events) == {"release"}

    events.clear()
    broken = Recording(make_config(state_dir=str(tmp_path / "broken")))
    broken.fail = True
    with pytest.raises(RuntimeError, match="the training broke"):
        ActiveLearner(broken.config, broken, log=quiet).run()
    assert events == ["train", "release"]
