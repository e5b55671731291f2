"""Ray Tune sweeps: one AL trial per grid point, results table, resume from the trial state dirs.

One real sweep (2 trials, 1 AL iteration each, tiny model) is run once for the module
and re-run once to check the resume; everything else fails before Ray does any work.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from raydal.al.report import area_under_curve
from raydal.al.state import STATE_FILE, StateStore
from raydal.config import ALConfig
from raydal.exceptions import ConfigError

pytestmark = pytest.mark.ray

GRID = {"b": [3, 5], "train.ll_lambda": [0.2]}
INITIAL, ITERATIONS = 10, 1


@pytest.fixture(scope="module")
def base(tiny_shards, tmp_path_factory) -> ALConfig:
    return ALConfig(
        dataset="ucmerced",
        shards_dir=str(tiny_shards),
        state_dir=str(tmp_path_factory.mktemp("unused")),
        strategy="ll+clustering",
        b=5,
        m=2,
        initial_labeled=INITIAL,
        iterations=ITERATIONS,
        seed=0,
        backbone="smallcnn",
        warm_start=True,
        executor="local",
        score_batch_size=32,
        train={"epochs": 1, "batch_size": 8, "lr": 0.05},
    )


@pytest.fixture(scope="module")
def sweep(ray_local, base, tmp_path_factory):
    from raydal.distributed.tune import run_sweep

    sweep_dir = tmp_path_factory.mktemp("sweep")
    result = run_sweep(base, GRID, sweep_dir)
    states = {r["state_dir"]: (Path(r["state_dir"]) / STATE_FILE).read_bytes() for r in result.rows}
    return sweep_dir, result, states


def test_grid_sweep_has_one_row_per_trial_with_its_overrides_and_labels(sweep, base):
    from raydal.distributed.tune import trial_config

    sweep_dir, result, _ = sweep
    assert sorted(r["overrides"]["b"] for r in result.rows) == [3, 5]
    for row in result.rows:
        assert row["error"] is None
        b = row["overrides"]["b"]
        assert row["overrides"] == {"b": b, "train.ll_lambda": 0.2}
        assert row["n_labeled"] == INITIAL + ITERATIONS * b
        assert row["iteration"] == ITERATIONS and row["trained"] == ITERATIONS + 1
        assert [c["n_labeled"] for c in row["curve"]] == [INITIAL, INITIAL + b]
        # the trial ran in its own state dir, under the trial's config
        assert row["state_dir"] == trial_config(base, row["overrides"], sweep_dir).state_dir
        assert Path(row["state_dir"]).parent == Path(sweep_dir).resolve()
        state = StateStore(row["state_dir"]).load()
        assert state.phase == "done" and state.n_labeled == row["n_labeled"]
        assert state.config["b"] == b and state.config["train"]["ll_lambda"] == 0.2
        assert state.config["strategy"] == "ll+clustering"
        # final F1 and the normalised area under the test curve come from the state's history
        x = [h["n_labeled"] for h in state.history]
        for metric in ("micro_f1", "macro_f1"):
            y = [h["test"][metric] for h in state.history]
            assert row[metric] == pytest.approx(y[-1])
            assert row[f"auc_{metric}"] == pytest.approx(area_under_curve(*map(_np, (x, y))))
            assert row[f"auc_{metric}"] == pytest.approx((y[0] + y[1]) / 2)  # two points: the mean
    assert result.rows[0]["auc_micro_f1"] >= result.rows[1]["auc_micro_f1"]
    assert result.best is result.rows[0]


def _np(v):
    return np.asarray(v, float)


def test_sweep_writes_json_and_markdown_tables(sweep):
    sweep_dir, result, _ = sweep
    saved = json.loads((Path(sweep_dir) / "sweep.json").read_text())
    assert saved["metric"] == "auc_micro_f1"
    assert [r["state_dir"] for r in saved["rows"]] == [r["state_dir"] for r in result.rows]
    md = (Path(sweep_dir) / "sweep.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(table) == 2
    assert f"{100 * result.rows[0]['auc_micro_f1']:.2f}" in table[0]
    assert Path(result.rows[0]["state_dir"]).name in table[0]
    assert Path(result.experiment_path).parent == Path(sweep_dir).resolve() / "tune"


def test_rerunning_the_sweep_resumes_finished_trials_without_training(sweep, base):
    from raydal.distributed.tune import run_sweep

    sweep_dir, first, states = sweep
    again = run_sweep(base, GRID, sweep_dir)
    by_dir = {r["state_dir"]: r for r in again.rows}
    assert set(by_dir) == set(states)
    for row in first.rows:
        resumed = by_dir[row["state_dir"]]
        assert resumed["trained"] == 0  # every record was replayed from the state dir
        assert (Path(row["state_dir"]) / STATE_FILE).read_bytes() == states[row["state_dir"]]
        for key in ("n_labeled", "micro_f1", "macro_f1", "auc_micro_f1", "auc_macro_f1"):
            assert resumed[key] == row[key]
    assert again.experiment_path != first.experiment_path


def test_trial_state_dirs_are_deterministic_from_overrides_and_base(base, tmp_path):
    from raydal.distributed.tune import trial_config

    one = trial_config(base, {"b": 5, "train.ll_lambda": 0.2}, tmp_path)
    assert one.state_dir == trial_config(base, {"train.ll_lambda": 0.2, "b": 5}, tmp_path).state_dir
    assert Path(one.state_dir).name.startswith("b=5,train.ll_lambda=0.2-")
    assert one.b == 5 and one.train["ll_lambda"] == 0.2 and one.executor == "local"
    assert trial_config(base, {"b": 3}, tmp_path).state_dir != one.state_dir
    # a changed base (more epochs) is another experiment: another folder, no fingerprint clash
    longer = ALConfig.from_dict({**base.to_dict(), "train": {**base.train, "epochs": 2}})
    assert trial_config(longer, {"b": 5, "train.ll_lambda": 0.2}, tmp_path).state_dir != one.state_dir
    # Tune's samplers hand out NumPy scalars: same trial as the Python value
    assert (
        trial_config(base, {"b": np.int64(5), "train.ll_lambda": np.float64(0.2)}, tmp_path).state_dir == one.state_dir
    )
    # more iterations is the same experiment, continued
    more = ALConfig.from_dict({**base.to_dict(), "iterations": 3})
    assert trial_config(more, {"b": 5, "train.ll_lambda": 0.2}, tmp_path).state_dir == one.state_dir


@pytest.mark.parametrize(
    "space, kwargs, match",
    [
        ({"lambda": [0.1, 1.0]}, {}, r"Unknown sweep parameter.*'lambda'.*train\.ll_lambda"),
        ({"train.nope": [1]}, {}, r"Unknown sweep parameter.*train\.nope"),
        ({"iterations": [1, 2]}, {}, r"Unknown sweep parameter.*iterations"),
        ({"b": [5, 0]}, {}, r"'b' parameter of ALConfig must be an int >= 1\. Got 0"),
        ({"train.ll_lambda": [-1.0]}, {}, r"'ll_lambda' parameter of TrainConfig"),
        (
            {"strategy": ["ll+clustering", "entropy"]},
            {},
            r"'strategy' parameter of ALConfig must be one of .*Got 'entropy'",
        ),
        (
            {"backbone": ["smallcnn", "vit"]},
            {},
            r"'backbone' parameter of ALConfig must be one of .*smallcnn.*Got 'vit'",
        ),
        ({"b": [5]}, {"num_samples": 3}, r"sweep the seed instead: 'seed': \[0, 1, 2\]"),
        ({"b": [5]}, {"metric": "loss"}, r"'metric' parameter of run_sweep"),
        ({"b": [5]}, {"scheduler": "pbt"}, r"'scheduler' parameter of run_sweep"),
    ],
)
def test_bad_sweeps_fail_before_any_ray_work(base, tmp_path, space, kwargs, match):
    from raydal.distributed.tune import run_sweep

    with pytest.raises(ConfigError, match=match):
        run_sweep(base, space, tmp_path / "sweep", **kwargs)
    assert not (tmp_path / "sweep").exists()


def test_trials_larger_than_the_cluster_are_refused_instead_of_hanging(ray_local, base, tmp_path):
    from raydal.distributed.tune import run_sweep

    with pytest.raises(ConfigError, match=r"more than the cluster has now.*max_concurrent_trials"):
        run_sweep(base, {"b": [5]}, tmp_path / "sweep", resources_per_trial={"CPU": 1, "GPU": 1})


def test_asha_stops_by_trained_iterations(base):
    from ray.tune.schedulers import ASHAScheduler

    from raydal.al.sweep import max_reports
    from raydal.distributed.tune import _scheduler

    assert _scheduler(None, "auc_micro_f1", 2) is None
    asha = _scheduler("asha", "auc_micro_f1", max_reports(base))
    assert isinstance(asha, ASHAScheduler)
    assert asha._time_attr == "training_iteration" and asha._max_t == ITERATIONS + 1
