"""Planning a sweep and its results table: plain Python, no Ray (raydal.al.sweep)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from raydal.al.report import area_under_curve
from raydal.al.state import ALState, StateStore
from raydal.al.sweep import (
    SweepResult,
    curve_metrics,
    default_concurrency,
    grid_points,
    max_reports,
    plan_sweep,
    rank_rows,
    sweepable_keys,
    trial_config,
    trial_lock,
    trial_row,
)
from raydal.config import ALConfig, setting_kind
from raydal.exceptions import ConfigError, RaydalError
from raydal.settings import RESULT


@pytest.fixture
def base(make_config):
    return make_config(strategy="ll+clustering", iterations=1)


def test_planning_a_sweep_does_not_import_ray(base, tmp_path):
    code = (
        "import sys; from raydal.al.sweep import plan_sweep; from raydal.config import ALConfig; "
        f"plan_sweep(ALConfig.from_dict({base.to_dict()!r}), {{'b': [3, 5]}}, {str(tmp_path)!r}); "
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )


def test_grid_points_multiply_lists_and_keep_constants():
    points = list(grid_points({"b": [5, 10], "m": {"grid_search": [2, 3]}, "seed": 7}))
    assert points == [
        {"seed": 7, "b": 5, "m": 2},
        {"seed": 7, "b": 5, "m": 3},
        {"seed": 7, "b": 10, "m": 2},
        {"seed": 7, "b": 10, "m": 3},
    ]
    assert list(grid_points({})) == [{}]


def test_plan_resolves_paths_and_validates_every_point(base, tmp_path):
    plan = plan_sweep(base, {"b": [3, 5], "train.ll_lambda": [0.2]}, tmp_path / "sweep")
    assert plan.sweep_dir == str((tmp_path / "sweep").resolve())
    assert plan.base.executor == "local" and Path(plan.base.shards_dir).is_absolute()
    assert plan.points == [{"b": 3, "train.ll_lambda": 0.2}, {"b": 5, "train.ll_lambda": 0.2}]
    assert plan.resources == {"CPU": 1} and plan.max_reports == 2
    assert not (tmp_path / "sweep").exists()  # planning writes nothing
    # A sampled entry (as Tune's Domain objects are) is not enumerated but allows num_samples > 1.
    sampled = object()
    plan = plan_sweep(
        base, {"b": [3], "train.lr": sampled}, tmp_path / "s", num_samples=4, is_search_space=lambda v: v is sampled
    )
    assert plan.points == [{"b": 3}]


@pytest.mark.parametrize(
    "space, kwargs, match",
    [
        ({"lambda": [0.1, 1.0]}, {}, r"Unknown sweep parameter.*'lambda'.*train\.ll_lambda"),
        ({"iterations": [1, 2]}, {}, r"Unknown sweep parameter.*iterations"),
        ({"b": [5, 0]}, {}, r"'b' parameter of ALConfig must be an int >= 1\. Got 0"),
        ({"train.ll_lambda": [-1.0]}, {}, r"'ll_lambda' parameter of TrainConfig"),
        (
            {"strategy": ["ll+clustering", "entropy"]},
            {},
            r"'strategy' parameter of ALConfig must be one of .*Got 'entropy'",
        ),
        ({"backbone": ["vgg"]}, {}, r"'backbone' parameter of ALConfig must be one of .*Got 'vgg'"),
        ({"b": {"values": [1]}}, {}, r"is a mapping"),
        ({"b": [5]}, {"num_samples": 3}, r"sweep the seed instead: 'seed': \[0, 1, 2\]"),
        ({"b": [5]}, {"metric": "loss"}, r"'metric' parameter of run_sweep"),
        ({"b": [5]}, {"scheduler": "pbt"}, r"'scheduler' parameter of run_sweep"),
        ({"b": [5]}, {"max_concurrent_trials": 0}, r"'max_concurrent_trials'"),
        ({"b": [5]}, {"resources_per_trial": {"CPU": -1}}, r"resources_per_trial must map"),
    ],
)
def test_bad_sweeps_are_refused_while_planning(base, tmp_path, space, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        plan_sweep(base, space, tmp_path / "sweep", **kwargs)


def test_sweepable_keys_include_the_ll_module_ablation():
    keys = sweepable_keys()
    assert {"b", "m", "seed", "ll_module", "train.ll_lambda", "train.amp"} <= set(keys)
    assert "iterations" not in keys and "shards_dir" not in keys


def test_sweepable_keys_are_the_result_settings_read_from_their_kinds():
    """A sweep varies what changes results, on one experiment (identity), each trial in
    process (the Ray executor's placement does not apply), every trial as long (execution)."""
    from raydal.training.config import TrainConfig

    keys = set(sweepable_keys())
    train = [f"train.{f.name}" for f in dataclasses.fields(TrainConfig)]
    for key in [f.name for f in dataclasses.fields(ALConfig)] + train:
        placement = key in ("executor", "num_workers", "use_gpu")
        expected = setting_kind(key) == RESULT and key != "train" and not placement
        assert (key in keys) == expected, key
    assert "eval_max_samples" in keys and "train.eval_every" not in keys and "mode" not in keys


def test_trial_state_dirs_are_deterministic_from_overrides_and_base(base, tmp_path):
    one = trial_config(base, {"b": 5, "train.ll_lambda": 0.2}, tmp_path)
    assert one.state_dir == trial_config(base, {"train.ll_lambda": 0.2, "b": 5}, tmp_path).state_dir
    assert Path(one.state_dir).name.startswith("b=5,train.ll_lambda=0.2-")
    assert one.b == 5 and one.train["ll_lambda"] == 0.2 and one.executor == "local"
    assert trial_config(base, {"b": 3}, tmp_path).state_dir != one.state_dir
    assert (
        trial_config(base, {"b": np.int64(5), "train.ll_lambda": np.float64(0.2)}, tmp_path).state_dir == one.state_dir
    )


def test_max_reports_counts_the_initial_model():
    from raydal.config import ALConfig

    assert max_reports(ALConfig(shards_dir="x", iterations=3)) == 4
    assert max_reports(ALConfig(shards_dir="x", iterations=None, initial_labeled=40, b=20, label_budget=100)) == 4


def test_default_concurrency_keeps_a_cpu_free_and_counts_gpus():
    assert default_concurrency({"CPU": 1}, {"CPU": 2.0}, None) == 1
    assert default_concurrency({"CPU": 1}, {"CPU": 8.0}, None) == 7
    assert default_concurrency({"CPU": 2, "GPU": 1}, {"CPU": 32.0, "GPU": 4.0}, None) == 4
    assert default_concurrency({"CPU": 1}, {"CPU": 8.0}, 3) == 3
    # an autoscaling cluster with no GPU node up yet: the explicit limit is trusted
    assert default_concurrency({"CPU": 4, "GPU": 1}, {"CPU": 8.0}, 2) == 2
    with pytest.raises(ConfigError, match="more than the cluster has now"):
        default_concurrency({"CPU": 1, "GPU": 1}, {"CPU": 2.0}, None)


def test_two_trials_on_one_state_dir_take_turns(tmp_path):
    """tune.choice can sample the same overrides twice: the second trial waits, then resumes."""
    events = []

    def second():
        with trial_lock(str(tmp_path)):
            events.append("second")

    with trial_lock(str(tmp_path)):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and events == []  # blocked while the first holds the dir
        events.append("first")
    thread.join(timeout=5)
    assert events == ["first", "second"]


def _history(f1s):
    return [
        {
            "iteration": i,
            "n_labeled": 10 + 5 * i,
            "test": {"micro_f1": f, "macro_f1": f / 2},
            "val": {"micro_f1": f - 0.1, "macro_f1": f / 4},
        }
        for i, f in enumerate(f1s)
    ]


def test_curve_metrics_are_last_values_and_running_areas():
    m = curve_metrics(_history([0.4, 0.6, 0.8]))
    assert m["micro_f1"] == 0.8 and m["val_macro_f1"] == pytest.approx(0.2)
    assert m["auc_micro_f1"] == pytest.approx(area_under_curve(np.array([10, 15, 20]), np.array([0.4, 0.6, 0.8])))
    assert m["val_auc_micro_f1"] == pytest.approx(0.5)


def test_rows_are_ranked_and_written_as_a_table(tmp_path):
    state_dir = tmp_path / "b=5-abc"
    s = ALState(config={"strategy": "ll"}, fingerprint="x", phase="done")
    s.history = _history([0.4, 0.6])
    StateStore(str(state_dir)).save(s)
    report = {"n_labeled": 15, "iteration": 1, **curve_metrics(s.history), "trained": 2}
    good = trial_row({"b": np.int64(5)}, report, str(state_dir), None, "auc_micro_f1")
    assert good["overrides"] == {"b": 5} and good["curve"][1] == {"n_labeled": 15, "micro_f1": 0.6, "macro_f1": 0.3}
    better = dict(good, overrides={"b": 10}, auc_micro_f1=0.9)
    silent = trial_row({"b": 1}, {}, str(tmp_path / "none"), None, "auc_micro_f1")
    assert silent["error"].startswith("the trial reported nothing") and silent["curve"] == []
    failed = dict(good, overrides={"b": 2}, error="RuntimeError: boom", auc_micro_f1=0.99)
    nan = dict(good, overrides={"b": 3}, auc_micro_f1=math.nan)
    rows = rank_rows([silent, good, failed, nan, better], "auc_micro_f1")
    assert [r["overrides"]["b"] for r in rows[:2]] == [10, 5]
    result = SweepResult(rows, "auc_micro_f1", str(tmp_path), param_keys=["b"])
    assert result.best["overrides"] == {"b": 10}
    result.write()
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["metric"] == "auc_micro_f1" and len(saved["rows"]) == 5
    md = (tmp_path / "sweep.md").read_text().splitlines()
    assert md[0] == "# raydal sweep: 5 trial(s), ranked by auc_micro_f1"
    assert md[4].startswith("| 1 | 10 | 15 | 60.00 | 30.00 | 90.00 |")
    assert "RuntimeError: boom" in "\n".join(md)
    with pytest.raises(RaydalError, match="Every trial of the sweep"):
        SweepResult([failed], "auc_micro_f1", str(tmp_path)).best
