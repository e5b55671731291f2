"""`raydal run` / `jobs/al_*.py` flags: derived from the config declarations, merged by one function."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raydal.al.state import StateStore
from raydal.cli import _overrides, build_parser, config_from_args
from raydal.cli import main as cli
from raydal.config import ALConfig, ExperimentConfig, resolve_config
from raydal.settings import declared_settings, value_type
from raydal.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _args(*argv):
    return build_parser().parse_args(["run", *argv])


def test_unset_flags_are_not_given():
    """No flag carries a default of its own: with none given, the layers decide everything."""
    args = _args("treesatai")
    assert _overrides(args) == {}
    assert config_from_args(args) == resolve_config("treesatai")


def _sample(cls, f):
    """A valid non-default command-line value of declared field ``f``."""
    base, _ = value_type(cls, f.name)
    meta = f.metadata
    if meta["choices"] is not None:
        return [c for c in meta["choices"] if c != f.default][0]
    if base is int:
        return (meta["range"].low or 0) + 2
    if base is float:
        return 0.5
    return "some/path"


@pytest.mark.parametrize("cls,prefix", [(ExperimentConfig, ""), (ALConfig, ""), (TrainConfig, "train.")])
def test_every_declared_setting_has_a_flag(cls, prefix):
    """A field declared with setting() gets a flag without a CLI edit, and the flag reaches the field."""
    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    by_dest = {a.dest: a for a in run._actions}
    for f in declared_settings(cls):
        dest = prefix + f.name
        if not f.metadata["cli"]:
            assert dest not in by_dest or dest == "dataset"  # the dataset is the positional argument
            continue
        action = by_dest[dest]
        base, _ = value_type(cls, f.name)
        if base is bool:
            on, off = [a for a in run._actions if a.dest == dest]
            args_on = parser.parse_args(["run", "ucmerced", on.option_strings[0]])
            args_off = parser.parse_args(["run", "ucmerced", off.option_strings[0]])
            got = [_overrides(a)[f.name] if not prefix else _overrides(a)["train"][f.name] for a in (args_on, args_off)]
            assert got == [True, False]
            continue
        value = _sample(cls, f)
        args = parser.parse_args(["run", "ucmerced", action.option_strings[0], str(value)])
        over = _overrides(args)
        assert (over["train"] if prefix else over)[f.name] == value
        assert f.metadata["help"] and f.metadata["help"] in action.help.replace("%%", "%")


def test_existing_flag_names_still_work(tmp_path):
    args = _args(
        "treesatai",
        "--data-root",
        "arch",
        "--shards-dir",
        "sh",
        "--size",
        "64",
        "--fake-n",
        "100",
        "--state-dir",
        "st",
        "--mode",
        "human",
        "--strategy",
        "ll",
        "--b",
        "5",
        "--m",
        "2",
        "--initial-labeled",
        "10",
        "--iterations",
        "3",
        "--label-budget",
        "30",
        "--trials",
        "2",
        "--seed",
        "4",
        "--fork",
        "--backbone",
        "smallcnn",
        "--weights",
        "w.pt",
        "--epochs",
        "2",
        "--lr",
        "0.5",
        "--batch-size",
        "4",
        "--cold-start",
        "--executor",
        "local",
        "--num-workers",
        "3",
        "--gpu",
        "--cpus-per-worker",
        "0.25",
        "--score-concurrency",
        "2",
        "--score-batch-size",
        "16",
        "--preset",
        "demo",
        "--no-report",
    )
    exp = config_from_args(args)
    run = exp.run
    assert (exp.data_root, exp.image_size, exp.fake_n, exp.trials) == ("arch", 64, 100, 2)
    assert (run.shards_dir, run.state_dir, run.mode, run.strategy, run.b, run.m, run.initial_labeled) == (
        "sh",
        "st",
        "human",
        "ll",
        5,
        2,
        10,
    )
    assert (run.iterations, run.label_budget, run.seed, run.backbone, run.weights, run.warm_start) == (
        3,
        30,
        4,
        "smallcnn",
        "w.pt",
        False,
    )
    assert (run.train["epochs"], run.train["lr"], run.train["batch_size"]) == (2, 0.5, 4)
    assert (run.executor, run.num_workers, run.use_gpu, run.cpus_per_worker) == ("local", 3, True, 0.25)
    assert (run.score_concurrency, run.score_batch_size) == (2, 16)
    assert args.fork and not args.report
    assert config_from_args(_args("ucmerced", "--warm-start")).run.warm_start is True


def test_yaml_strategy_and_seed_are_not_replaced_by_flag_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("strategy: tpd+clustering\nseed: 7\nmode: human\nexecutor: local\n")
    run = config_from_args(_args("ucmerced", "--config", str(path))).run
    assert (run.strategy, run.seed, run.mode, run.executor) == ("tpd+clustering", 7, "human", "local")
    run = config_from_args(_args("ucmerced", "--config", str(path), "--seed", "2", "--strategy", "random")).run
    assert (run.strategy, run.seed) == ("random", 2)


def test_yaml_strategy_and_seed_are_what_runs(tiny_shards, tmp_path, capsys):
    """End to end: the run started from the YAML is a tpd+clustering run with seed 7."""
    path = tmp_path / "c.yaml"
    path.write_text("strategy: tpd+clustering\nseed: 7\n")
    state = tmp_path / "state"
    rc = cli(
        [
            "run",
            "ucmerced",
            "--config",
            str(path),
            "--shards-dir",
            str(tiny_shards),
            "--state-dir",
            str(state),
            "--executor",
            "local",
            "--trials",
            "1",
            "--backbone",
            "smallcnn",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--initial-labeled",
            "10",
            "--b",
            "5",
            "--m",
            "2",
            "--iterations",
            "1",
            "--no-report",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    saved = StateStore(str(state)).load()
    assert saved.config["strategy"] == "tpd+clustering" and saved.config["seed"] == 7
    assert [h["n_labeled"] for h in saved.history] == [10, 15]
    assert "[tpd+clustering, done]" in capsys.readouterr().out


def _print_config(argv, capsys):
    assert cli(["run", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["ucmerced"],
        ["treesatai"],
        ["bigearthnet", "--preset", "demo"],
        [
            "ucmerced",
            "--preset",
            "demo",
            "--strategy",
            "ll+clustering",
            "--seed",
            "3",
            "--ll-lambda",
            "0.2",
            "--cold-start",
            "--label-budget",
            "100",
            "--size",
            "48",
            "--executor",
            "local",
        ],
    ],
)
def test_print_config_round_trip(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _print_config(argv, capsys)
    data = yaml.safe_load(first)
    assert {"trials", "label_budget", "iterations", "train"} <= set(data)
    saved = tmp_path / "resolved.yaml"
    saved.write_text(first)
    again = _print_config([argv[0], "--config", str(saved)], capsys)
    assert yaml.safe_load(again) == data  # loaded back unchanged; now every value comes from the file
    assert resolve_config(argv[0], config_file=saved) == config_from_args(_args(*argv))
    values = [line for line in again.splitlines() if not line.startswith("#") and not line.endswith(":")]
    assert values and all(" # file" in line for line in values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resolved.yaml"]  # no shards, no state dir


def test_print_config_marks_each_values_source(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("b: 7\ntrain:\n  lr: 0.3\n")
    out = _print_config(
        ["treesatai", "--preset", "demo", "--config", str(path), "--seed", "3", "--epochs", "5"], capsys
    )
    lines = out.splitlines()
    for expected in (
        "b: 7  # file",
        "  lr: 0.3  # file",
        "seed: 3  # flag",
        "  epochs: 5  # flag",
        "  batch_size: 16  # preset",
        "trials: 1  # preset",
        "m: 3  # preset",
        "warm_start: false  # paper",
        "score_batch_size: 64  # built-in",
        "dataset: treesatai  # flag",
    ):
        assert expected in lines, expected
    # a stopping rule given by a layer sets both criteria: the demo's iterations, its label_budget None
    assert "iterations: 4  # preset" in lines and "label_budget: null  # preset" in lines


def test_print_config_says_which_paper_protocol_choices_are_raydals(capsys):
    """The paper gives no pretraining, momentum, weight decay or precision: those values are raydal's."""
    lines = _print_config(["ucmerced"], capsys).splitlines()
    for expected in (
        "weights: null  # built-in; not stated by the paper: raydal's choice",
        "  momentum: 0.9  # built-in; not stated by the paper: raydal's choice",
        "  weight_decay: 0.0005  # built-in; not stated by the paper: raydal's choice",
        "  amp: auto  # built-in; not stated by the paper: raydal's choice",
        "  lr: 0.025  # paper",
        "b: 20  # paper",
        "label_budget: 400  # paper",
    ):
        assert expected in lines, expected
    assert any(
        line.startswith("# not stated by the paper")
        and "DenseNet121 trained from scratch" in line
        and "bf16 autocast on CUDA" in line
        for line in lines
    )
    lines = _print_config(["ucmerced", "--weights", "w.pt", "--amp", "off"], capsys).splitlines()
    assert "weights: w.pt  # flag" in lines and "  amp: 'off'  # flag" in lines  # the user's choice now
    assert any(
        "BigEarthNet is not in the paper" in line for line in _print_config(["bigearthnet"], capsys).splitlines()
    )


def test_a_paper_run_without_data_root_says_first_that_its_archive_is_generated(
    tiny_shards, tmp_path, capsys, monkeypatch
):
    import raydal.al.experiment
    from raydal.exceptions import DatasetNotFoundError

    def stop(*a, **k):  # the run stops where it would generate and prepare the archive
        raise DatasetNotFoundError("stopped by the test")

    monkeypatch.setattr(raydal.al.experiment, "ensure_shards", stop)
    assert cli(["run", "ucmerced", "--state-dir", str(tmp_path / "st")]) == 2
    first = capsys.readouterr().out.splitlines()[0]
    assert "GENERATED ucmerced archive" in first and "not comparable with the paper's" in first
    assert "--data-root" in first and str(tmp_path / "shards-ucmerced-archive") in first
    # shards prepared from a real archive, or a --data-root: nothing to say
    assert cli(["run", "ucmerced", "--shards-dir", str(tiny_shards), "--state-dir", str(tmp_path / "st")]) == 2
    assert "GENERATED" not in capsys.readouterr().out
    assert cli(["run", "ucmerced", "--data-root", str(tmp_path), "--state-dir", str(tmp_path / "st")]) == 2
    assert "GENERATED" not in capsys.readouterr().out


def test_print_config_shows_trials_and_budget(capsys):
    out = _print_config(["treesatai"], capsys)
    data = yaml.safe_load(out)
    assert data["trials"] == 3 and data["label_budget"] == 18000 and data["initial_labeled"] == 1000
    assert data["b"] == 1000 and data["iterations"] is None
    assert out.startswith("# raydal treesatai: 3 trial(s) (seeds 0..2); stops at 18000 labels (1000 initial")
    data = yaml.safe_load(_print_config(["ucmerced", "--trials", "1", "--iterations", "2"], capsys))
    assert data["trials"] == 1 and data["iterations"] == 2 and data["label_budget"] is None


def test_print_config_starts_nothing(tmp_path, capsys, monkeypatch):
    """--print-config exits before shards are prepared or Ray starts."""
    import raydal.al.experiment
    import raydal.distributed.session

    def boom(*a, **k):
        raise AssertionError("--print-config must not prepare shards or start Ray")

    monkeypatch.setattr(raydal.al.experiment, "ensure_shards", boom)
    monkeypatch.setattr(raydal.distributed.session, "ensure_ray", boom)
    _print_config(["ucmerced", "--state-dir", str(tmp_path / "st")], capsys)
    assert not (tmp_path / "st").exists()


def test_bad_names_fail_before_anything_runs(tmp_path, capsys):
    state = tmp_path / "st"
    assert cli(["run", "ucmerced", "--state-dir", str(state), "--config", str(_yaml(tmp_path, backbone="vit"))]) == 2
    err = capsys.readouterr().err
    assert "'backbone' parameter of ALConfig must be one of" in err and "densenet121" in err and "smallcnn" in err
    assert not state.exists() and not (tmp_path / "shards-ucmerced").exists()
    assert cli(["run", "ucmerced", "--state-dir", str(state), "--b", "0"]) == 2
    assert "'b' parameter of ALConfig must be an int >= 1. Got 0 instead." in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses a name outside the registry too
        cli(["run", "ucmerced", "--strategy", "entropy"])
    assert "invalid choice: 'entropy'" in capsys.readouterr().err


def _yaml(tmp_path, **fields):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_sweep_refuses_trials(tmp_path, capsys):
    assert cli(["sweep", "ucmerced", str(tmp_path / "s"), "--param", "b=4,6", "--trials", "3"]) == 2
    assert "--param seed=0,1,2" in capsys.readouterr().err


def test_job_print_config(tmp_path):
    """jobs/al_*.py forward to `raydal run DATASET`: --print-config works there as is."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "al_treesat.py"), "--print-config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    data = yaml.safe_load(out)
    assert (data["dataset"], data["trials"], data["label_budget"]) == ("treesatai", 3, 18000)
    assert list(tmp_path.iterdir()) == []
