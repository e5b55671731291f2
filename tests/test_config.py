"""The configuration: declared settings, validation, presets and the precedence of the layers."""

import dataclasses

import pytest
import yaml

from raydal.config import (
    DEMO_PRESET,
    PAPER_PRESETS,
    ALConfig,
    ExperimentConfig,
    merge_layers,
    resolve_config,
    setting_kind,
)
from raydal.exceptions import ConfigError
from raydal.settings import EXECUTION, IDENTITY, KINDS, RESULT, declared_settings, field_kind, value_type
from raydal.training.config import TrainConfig


def test_validation_names_parameter_and_value():
    with pytest.raises(ConfigError, match=r"'b' parameter of ALConfig must be an int >= 1. Got 0"):
        ALConfig(shards_dir="s", b=0)
    with pytest.raises(ConfigError, match="mode"):
        ALConfig(shards_dir="s", mode="interactive")
    with pytest.raises(ConfigError, match="never ends"):
        ALConfig(shards_dir="s", iterations=None, label_budget=None)
    with pytest.raises(ConfigError, match="label_budget"):
        ALConfig(shards_dir="s", initial_labeled=40, label_budget=10, iterations=None)
    with pytest.raises(ConfigError, match=r"'lr' parameter of TrainConfig must be a float > 0. Got -1"):
        ALConfig(shards_dir="s", train={"lr": -1})
    with pytest.raises(ConfigError, match=r"Unknown TrainConfig field\(s\) \['learning_rate'\]"):
        ALConfig(shards_dir="s", train={"learning_rate": 0.1})


# -- every numeric parameter, out of range --------------------------------------------------


def _numeric_fields():
    for cls in (ALConfig, TrainConfig, ExperimentConfig):
        for f in dataclasses.fields(cls):
            base, _ = value_type(cls, f.name) if f.name != "run" else (None, False)
            if base in (int, float):
                yield pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")


def _build(cls, **kwargs):
    if cls is ALConfig:
        return ALConfig(shards_dir="s", **kwargs)
    if cls is ExperimentConfig:
        return ExperimentConfig(run=ALConfig(shards_dir="s"), **kwargs)
    return cls(**kwargs)


def _outside(rng):
    """Values just outside ``rng`` (below the low bound, above the high one)."""
    step = 1 if rng.type is int else 0.5
    out = []
    if rng.low is not None:
        out.append(rng.low - step if rng.closed in ("both", "left") else rng.low)
    if rng.high is not None:
        out.append(rng.high + step if rng.closed in ("both", "right") else rng.high)
    return out


@pytest.mark.parametrize("cls,f", list(_numeric_fields()))
def test_every_numeric_parameter_rejects_values_out_of_range(cls, f):
    rng = f.metadata.get("range")
    assert rng is not None, (
        f"{cls.__name__}.{f.name} is numeric but declares no range: add setting(range=Interval(...))"
    )
    bad_values = _outside(rng)
    assert bad_values, f"{cls.__name__}.{f.name}: its range {rng} must bound it on at least one side"
    for bad in [*bad_values, "7", True]:
        with pytest.raises(ConfigError) as err:
            _build(cls, **{f.name: bad})
        msg = str(err.value)
        assert f"'{f.name}' parameter of {cls.__name__}" in msg
        assert f"Got {bad!r} instead" in msg
        assert str(rng) in msg  # the allowed range, in words


@pytest.mark.parametrize(
    "field,bad,valid",
    [
        ("dataset", "eurosat", "ucmerced"),
        ("strategy", "entropy", "mge+clustering"),
        ("backbone", "vit_b16", "densenet121"),
        ("executor", "dask", "local"),
        ("clustering_backend", "cuml", "sklearn"),
    ],
)
def test_names_are_checked_against_the_registries(field, bad, valid):
    with pytest.raises(ConfigError) as err:
        ALConfig(shards_dir="s", **{field: bad})
    msg = str(err.value)
    assert f"'{field}' parameter of ALConfig must be one of" in msg and repr(bad) in msg
    assert valid in msg  # the valid names are listed


def test_names_come_from_the_registries_at_validation_time():
    """A strategy registered after the config module was imported is accepted: the
    choices are asked from the registry, not copied."""
    from raydal.query import base
    from raydal.query.random import RandomStrategy

    base.register_strategy("random-copy-for-test")(RandomStrategy)
    try:
        assert ALConfig(shards_dir="s", strategy="random-copy-for-test").strategy == "random-copy-for-test"
    finally:
        del base._REGISTRY["random-copy-for-test"]


def test_yaml_round_trip_and_unknown_field(tmp_path):
    cfg = ALConfig(shards_dir="s", b=7, train={"epochs": 3})
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert ALConfig.from_yaml(path) == cfg
    path.write_text("b: 3\nshards_dir: s\nbudget: 9\n")
    with pytest.raises(ConfigError, match="Unknown ALConfig field.*budget"):
        ALConfig.from_yaml(path)


def test_train_is_completed_so_equal_trainings_fingerprint_alike():
    short = ALConfig(shards_dir="s", train={"epochs": 3})
    every = {k: v for k, v in TrainConfig(epochs=3).to_dict().items() if k not in ("seed", "warm_start")}
    full = ALConfig(shards_dir="s", train=every)
    assert short.train["momentum"] == TrainConfig().momentum
    assert "seed" not in short.train and "warm_start" not in short.train  # follow the run's fields
    assert short.train_config().seed == short.seed and short.train_config().warm_start == short.warm_start
    assert dataclasses.replace(short, seed=5).train_config().seed == 5
    assert full == short and full.fingerprint() == short.fingerprint()
    assert short.fingerprint() != ALConfig(shards_dir="s", train={"epochs": 4}).fingerprint()


# -- kinds: what a change of each setting does ---------------------------------------------


def _changed(cls, f):
    """A valid value of declared field ``f`` other than its default."""
    base, nullable = value_type(cls, f.name)
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    meta = f.metadata
    if f.name == "train":
        return {"epochs": 3}
    if f.name == "score_workers_min":
        return None  # its only valid values need score_workers (checked with it below)
    if meta["choices"] is not None:
        return next(c for c in meta["choices"] if c != default)
    if base is bool:
        return not default
    if base in (int, float):
        rng = meta["range"]
        low = rng.low if rng.low is not None else 0
        candidates = [low + 300, low + 301] if rng.high is None else [(low + rng.high) / 2, low + (rng.high - low) / 4]
        return base(next(c for c in candidates if c != default))
    return "some/other/path"


def _all_fields():
    for cls in (ALConfig, TrainConfig, ExperimentConfig):
        for f in dataclasses.fields(cls):
            if f.name != "run":  # ExperimentConfig.run is the ALConfig, walked itself
                yield pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")


@pytest.mark.parametrize("cls,f", list(_all_fields()))
def test_every_setting_declares_its_kind_and_the_fingerprint_follows_it(cls, f):
    """Every field of a run's config says what changing it does; the fingerprint (what a resume
    may not change without --fork) covers exactly the result and identity settings."""
    assert f.metadata.get("kind") in KINDS, f"{cls.__name__}.{f.name}: declare setting(..., kind=...)"
    if cls is ExperimentConfig:
        return  # settings around the run: trials and comparisons (execution), the archive (identity)
    base = ALConfig(shards_dir="s")
    value = _changed(cls, f)
    if cls is TrainConfig:
        changed = dataclasses.replace(base, train={**base.train, f.name: value})
    elif f.name == "score_workers_min":
        base, changed = (
            dataclasses.replace(base, score_workers=4),
            dataclasses.replace(base, score_workers=4, score_workers_min=2),
        )
    else:
        changed = dataclasses.replace(base, **{f.name: value})
    assert changed != base
    if f.metadata["kind"] == EXECUTION:
        assert changed.fingerprint() == base.fingerprint(), f"{f.name} is execution-only yet changes the fingerprint"
    else:
        assert changed.fingerprint() != base.fingerprint(), f"{f.name} changes results yet not the fingerprint"


def test_settings_that_change_results_are_declared_so():
    """Workers split each batch (batch_size // W, the rest dropped), the executors batch differently,
    a GPU trains in bf16 under amp auto: none of them may change on resume without --fork."""
    for name in ("num_workers", "executor", "use_gpu"):
        assert field_kind(ALConfig, name) == RESULT, name
    assert field_kind(TrainConfig, "amp") == RESULT and field_kind(TrainConfig, "batch_size") == RESULT
    for name in ("iterations", "label_budget", "state_dir", "score_workers", "score_batch_size", "storage_path"):
        assert field_kind(ALConfig, name) == EXECUTION, name
    assert field_kind(ALConfig, "dataset") == field_kind(ALConfig, "shards_dir") == IDENTITY
    assert setting_kind("train.lr") == RESULT and setting_kind("train.eval_every") == EXECUTION
    assert setting_kind("no_such_field") is None


def test_a_resume_that_changes_a_result_setting_is_refused_naming_it(tmp_path):
    """What the fingerprint covers is what the loop refuses: the message names the setting and --fork."""
    from raydal.al.loop import ActiveLearner
    from raydal.al.state import ALState, StateStore
    from raydal.exceptions import StateError

    cfg = ALConfig(shards_dir="s", state_dir=str(tmp_path / "st"), num_workers=2)
    StateStore(cfg.state_dir).save(ALState(config=cfg.to_dict(), fingerprint=cfg.fingerprint()))

    class NoWork:  # the refusal comes before the executor is used
        log = None

    for name, change in (
        ("num_workers", {"num_workers": 4}),
        ("use_gpu", {"use_gpu": True}),
        ("train.amp", {"train": {**cfg.train, "amp": "bf16"}}),
    ):
        with pytest.raises(StateError, match=r"differs in \['" + name + r"'\].*--fork"):
            ActiveLearner(dataclasses.replace(cfg, **change), NoWork(), log=lambda s: None)
    resumed = ActiveLearner(dataclasses.replace(cfg, score_workers=3, iterations=9), NoWork(), log=lambda s: None)
    assert resumed.state.config["score_workers"] == 3  # execution settings change freely


def test_a_state_from_an_earlier_raydal_with_the_same_result_settings_resumes(tmp_path):
    """A fingerprint that differs only because settings were added or reclassified since the
    state was written is updated, not refused; a real change is still refused, named."""
    from raydal.al.loop import ActiveLearner
    from raydal.al.state import ALState, StateStore
    from raydal.exceptions import StateError

    cfg = ALConfig(shards_dir="s", state_dir=str(tmp_path / "st"))
    old = cfg.to_dict()
    del old["eval_max_samples"]  # a setting that did not exist yet; this config keeps its default
    StateStore(cfg.state_dir).save(ALState(config=old, fingerprint="0123456789abcdef"))

    class NoWork:
        log = None

    with pytest.raises(StateError, match=r"differs in \['b'\]"):
        ActiveLearner(dataclasses.replace(cfg, b=cfg.b + 1), NoWork(), log=lambda s: None)
    lines = []
    resumed = ActiveLearner(cfg, NoWork(), log=lines.append)
    assert resumed.state.fingerprint == cfg.fingerprint()
    assert StateStore(cfg.state_dir).load().fingerprint == cfg.fingerprint()
    assert any("earlier raydal" in line for line in lines)
    with pytest.raises(StateError, match=r"differs in \['eval_max_samples'\]"):
        ActiveLearner(dataclasses.replace(cfg, eval_max_samples=10), NoWork(), log=lambda s: None)


def test_state_and_shards_dir_default_per_dataset():
    cfg = ALConfig(dataset="treesatai")
    assert cfg.state_dir == "runs/treesatai" and cfg.shards_dir == "runs/shards-treesatai"
    assert ALConfig(state_dir="x/run1").shards_dir == "x/shards-ucmerced"
    assert ALConfig(state_dir="s3://bucket/runs/run1/").shards_dir == "s3://bucket/runs/shards-ucmerced"
    assert ALConfig(state_dir="s3://bucket").shards_dir == "s3://bucket/shards-ucmerced"


# -- presets and the precedence of the layers ------------------------------------------------


def test_paper_preset_is_the_papers_protocol():
    ucm = resolve_config("ucmerced")
    assert (ucm.run.initial_labeled, ucm.run.b, ucm.run.label_budget, ucm.run.iterations) == (40, 20, 400, None)
    assert ucm.trials == 3 and ucm.run.seed == 0 and ucm.run.warm_start
    assert (ucm.run.train["epochs"], ucm.run.train["batch_size"], ucm.run.train["lr"]) == (100, 10, 0.025)
    tsa = resolve_config("treesatai", preset="paper")
    assert (tsa.run.initial_labeled, tsa.run.b, tsa.run.label_budget, tsa.run.iterations) == (1000, 1000, 18000, None)
    assert tsa.trials == 3 and not tsa.run.warm_start and tsa.run.m == 4
    assert (tsa.run.train["epochs"], tsa.run.train["batch_size"], tsa.run.train["lr"]) == (200, 100, 0.01)
    ben = resolve_config("bigearthnet")
    assert (ben.run.initial_labeled, ben.run.b, ben.run.label_budget, ben.trials) == (1000, 1000, 18000, 3)
    assert "stops at 400 labels (40 initial + 18 rounds of 20)" in ucm.to_yaml()


def test_demo_preset_stays_small():
    demo = resolve_config("ucmerced", preset="demo")
    assert demo.trials == 1 and demo.run.iterations == 4 and demo.run.label_budget is None
    assert demo.run.backbone == "smallcnn" and demo.image_size == 32 and demo.fake_n == 840
    assert demo.run.train["epochs"] == 8 and demo.run.num_workers == 2 and demo.run.cpus_per_worker == 0.5


def _layers(tmp_path, dataset, preset, file, flags):
    path = None
    if file is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(file))
    return resolve_config(dataset, preset=preset, config_file=path, overrides=flags)


def _get(exp, key):
    if key.startswith("train."):
        return exp.run.train[key[len("train.") :]]
    return getattr(exp, key) if key in ExperimentConfig.keys() else getattr(exp.run, key)


# (dataset, preset, --config file, flags, key, expected): each row shows which layer wins.
PRECEDENCE = [
    # built-in default where no layer sets the key
    ("treesatai", None, None, None, "score_batch_size", 64),
    ("treesatai", "demo", {"b": 7}, {"seed": 3}, "clustering_backend", "auto"),
    # dataset protocol (paper preset) over the built-in default
    ("treesatai", None, None, None, "b", 1000),
    ("treesatai", None, None, None, "train.epochs", 200),
    ("treesatai", None, None, None, "trials", 3),
    ("ucmerced", None, None, None, "backbone", "densenet121"),
    # --preset demo over the paper preset
    ("treesatai", "demo", None, None, "b", 20),
    ("treesatai", "demo", None, None, "train.epochs", 8),
    ("treesatai", "demo", None, None, "trials", 1),
    ("treesatai", "demo", None, None, "warm_start", False),  # demo leaves it: the paper preset's
    # --config over --preset demo
    ("treesatai", "demo", {"b": 7, "train": {"epochs": 3}}, None, "b", 7),
    ("treesatai", "demo", {"b": 7, "train": {"epochs": 3}}, None, "train.epochs", 3),
    ("treesatai", "demo", {"b": 7, "train": {"epochs": 3}}, None, "train.lr", 0.05),  # other train keys stay
    ("ucmerced", None, {"trials": 2}, None, "trials", 2),
    # the bug this replaces: a file's strategy/seed/mode/executor survive when no flag is given
    ("ucmerced", None, {"strategy": "tpd+clustering", "seed": 7}, None, "strategy", "tpd+clustering"),
    ("ucmerced", None, {"strategy": "tpd+clustering", "seed": 7}, None, "seed", 7),
    ("ucmerced", None, {"mode": "human", "executor": "local"}, None, "mode", "human"),
    ("ucmerced", None, {"mode": "human", "executor": "local"}, None, "executor", "local"),
    # explicit flags over everything
    ("treesatai", "demo", {"b": 7, "train": {"epochs": 3}}, {"b": 9, "train": {"epochs": 2}}, "b", 9),
    ("treesatai", "demo", {"b": 7, "train": {"epochs": 3}}, {"b": 9, "train": {"epochs": 2}}, "train.epochs", 2),
    ("ucmerced", None, {"seed": 7}, {"seed": 11}, "seed", 11),
    ("ucmerced", "demo", {"trials": 2}, {"trials": 5}, "trials", 5),
    # the stopping rule is one setting: a layer giving either criterion replaces both
    ("ucmerced", "demo", None, {"label_budget": 200}, "iterations", None),
    ("ucmerced", "demo", None, {"label_budget": 200}, "label_budget", 200),
    ("ucmerced", None, None, {"iterations": 2}, "label_budget", None),
    ("ucmerced", None, None, {"iterations": 2}, "iterations", 2),
    ("ucmerced", None, {"iterations": 3, "label_budget": 100}, None, "iterations", 3),
    ("ucmerced", None, {"iterations": 3, "label_budget": 100}, None, "label_budget", 100),
    ("ucmerced", "demo", {"label_budget": 100}, {"iterations": 1}, "label_budget", None),
]


@pytest.mark.parametrize("dataset,preset,file,flags,key,expected", PRECEDENCE)
def test_precedence_of_the_layers(tmp_path, dataset, preset, file, flags, key, expected):
    assert _get(_layers(tmp_path, dataset, preset, file, flags), key) == expected


def test_presets_hold_only_declared_fields():
    known = set(ExperimentConfig.keys()) | {f.name for f in dataclasses.fields(ALConfig)}
    train = {f.name for f in declared_settings(TrainConfig)}
    for layer in [*PAPER_PRESETS.values(), DEMO_PRESET]:
        assert set(layer) <= known and set(layer.get("train", {})) <= train


def test_merge_layers_merges_train_field_by_field():
    merged = merge_layers([{"b": 1, "train": {"lr": 0.1, "epochs": 3}}, {"train": {"epochs": 4}}, {"m": 2}])
    assert merged == {"b": 1, "m": 2, "train": {"lr": 0.1, "epochs": 4}}


def test_config_file_errors(tmp_path):
    other = tmp_path / "t.yaml"
    other.write_text("dataset: treesatai\nb: 5\n")
    with pytest.raises(ConfigError, match="is for dataset 'treesatai', not 'ucmerced'"):
        resolve_config("ucmerced", config_file=other)
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: 9\n")
    with pytest.raises(ConfigError, match=r"Unknown config field\(s\) \['budget'\]"):
        resolve_config("ucmerced", config_file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config("ucmerced", config_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="'preset' parameter"):
        resolve_config("ucmerced", preset="fast")


def test_to_yaml_loads_back_to_the_same_experiment(tmp_path):
    exp = resolve_config("treesatai", preset="demo", overrides={"seed": 4, "train": {"ll_lambda": 0.2}})
    path = tmp_path / "exp.yaml"
    path.write_text(exp.to_yaml())
    again = resolve_config("treesatai", config_file=path)
    assert again == exp and again.to_yaml() == exp.to_yaml()
