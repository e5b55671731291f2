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
        "treesatai", "--data-root", "arch", "--shards-dir", "sh", "--size", "64", "--fake-n", "100",
        "--state-dir", "st", "--mode", "human", "--strategy", "ll", "--b", "5", "--m", "2",
        "--initial-labeled", "10", "--iterations", "3", "--label-budget", "30", "--trials", "2", "--seed", "4",
        "--fork", "--backbone", "smallcnn", "--weights", "w.pt", "--epochs", "2", "--lr", "0.5",
        "--batch-size", "4", "--cold-start", "--executor", "local", "--num-workers", "3", "--gpu",
        "--cpus-per-worker", "0.25", "--score-concurrency", "2", "--score-batch-size", "16", "--preset", "demo",
        "--no-report",
    )
    exp = config_from_args(args)
    run = exp.run
    assert (exp.data_root, exp.image_size, exp.fake_n, exp.trials) == ("arch", 64, 100, 2)
    assert (run.shards_dir, run.state_dir, run.mode, run.strategy, run.b, run.m, run.initial_labeled) == (
        "sh", "st", "human", "ll", 5, 2, 10)
    assert (run.iterations, run.label_budget, run.seed, run.backbone, run.weights, run.warm_start) == (
        3, 30, 4, "smallcnn", "w.pt", False)
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
    rc = cli(["run", "ucmerced", "--config", str(path), "--shards-dir", str(tiny_shards), "--state-dir", str(state),
              "--executor", "local", "--trials", "1", "--backbone", "smallcnn", "--epochs", "1", "--batch-size", "8",
              "--initial-labeled", "10", "--b", "5", "--m", "2", "--iterations", "1", "--no-report"])
    assert rc == 0, capsys.readouterr().err
    saved = StateStore(str(state)).load()
    assert saved.config["strategy"] == "tpd+clustering" and saved.config["seed"] == 7
    assert [h["n_labeled"] for h in saved.history] == [10, 15]
    assert "[tpd+clustering, done]" in capsys.readouterr().out


def _print_config(argv, capsys):
    assert cli(["run", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["ucmerced"],
    ["treesatai"],
    ["bigearthnet", "--preset", "demo"],
    ["ucmerced", "--preset", "demo", "--strategy", "ll+clustering", "--seed", "3", "--ll-lambda", "0.2",
     "--cold-start", "--label-budget", "100", "--size", "48", "--executor", "local"],
])
def test_print_config_round_trip(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _print_config(argv, capsys)
    data = yaml.safe_load(first)
    assert {"trials", "label_budget", "iterations", "train"} <= set(data)
    saved = tmp_path / "resolved.yaml"
    saved.write_text(first)
    again = _print_config([argv[0], "--config", str(saved)], capsys)
    assert again == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resolved.yaml"]  # no shards, no state dir


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
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / "al_treesat.py"), "--print-config"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    data = yaml.safe_load(out)
    assert (data["dataset"], data["trials"], data["label_budget"]) == ("treesatai", 3, 18000)
    assert list(tmp_path.iterdir()) == []
