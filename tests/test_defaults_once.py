"""Every default declared once (issue 16 item 4): presets hold only what differs from the
declarations, every flag defaults to "not given", and no source repeats a declared default."""

import argparse
import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from raydal.al.humanloop import ExportOptions
from raydal.al.sweep import SweepOptions, plan_sweep
from raydal.cli import _reader_settings, build_parser
from raydal.config import (
    _DEMO,
    DEMO_BUILT_IN,
    DEMO_PRESET,
    PAPER_PRESETS,
    PAPER_PROTOCOL,
    ALConfig,
    ExperimentConfig,
    default_of,
    preset_layer,
    resolve_config,
)
from raydal.data import list_datasets, reader_class
from raydal.exceptions import ConfigError
from raydal.settings import Interval, check_value, declared_default, declared_settings, param_error
from raydal.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _flat(layer, prefix=""):
    for key, value in layer.items():
        if key == "train":
            yield from _flat(value, "train.")
        else:
            yield prefix + key, value


def _readers_with_settings():
    return [reader_class(n) for n in list_datasets() if reader_class(n).Settings is not None]


def _subparsers():
    parser = build_parser()
    return parser, parser._subparsers._group_actions[0].choices


# -- presets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,layer", [*PAPER_PRESETS.items(), ("demo", _DEMO)])
def test_presets_hold_only_what_differs_from_the_declared_defaults(name, layer):
    for key, value in _flat(layer):
        assert value != default_of(key), f"preset {name}: {key} = {value!r} is the declared default"


def test_a_paper_preset_gives_every_protocol_setting_the_rest_from_the_declarations():
    for dataset in PAPER_PRESETS:
        layer = dict(_flat(preset_layer("paper", dataset)))
        assert set(PAPER_PROTOCOL) <= set(layer), dataset
        for key in PAPER_PROTOCOL:
            if key not in dict(_flat(PAPER_PRESETS[dataset])):
                assert layer[key] == default_of(key)
    # the built-in defaults are UCMerced's protocol; BigEarthNet is TreeSatAI's at 120 px, 100 epochs
    ucm = resolve_config("ucmerced").run
    assert (ucm.b, ucm.m, ucm.initial_labeled, ucm.train["epochs"]) == (20, 3, 40, 100)
    ben, tsa = preset_layer("paper", "bigearthnet"), preset_layer("paper", "treesatai")
    assert ben["image_size"] == 120 and ben["train"]["epochs"] == default_of("train.epochs") == 100
    assert {k: v for k, v in ben.items() if k not in ("image_size", "train")} == {
        k: v for k, v in tsa.items() if k not in ("image_size", "train")
    }
    assert preset_layer("paper", "folder") == {}  # no protocol: the built-in defaults


def test_the_demo_resets_the_protocol_to_the_declared_defaults():
    for key in DEMO_BUILT_IN:
        assert DEMO_PRESET[key] == default_of(key) and key not in _DEMO
    demo = resolve_config("treesatai", preset="demo")
    assert (demo.run.b, demo.run.m, demo.run.initial_labeled, demo.trials) == (
        declared_default(ALConfig, "b"),
        declared_default(ALConfig, "m"),
        declared_default(ALConfig, "initial_labeled"),
        declared_default(ExperimentConfig, "trials"),
    )


# -- flags: an unset flag is "not given" -----------------------------------------------------------


def test_no_flag_of_any_command_carries_a_default_of_its_own():
    """Every option defaults to None ("not given": the library's declared default applies),
    but a plain switch (store_true / store_false of a flag that is no declared setting)."""
    _, commands = _subparsers()
    for command, sub in commands.items():
        for action in sub._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            if switch and action.default is not None:
                assert isinstance(action.default, bool), (command, action.option_strings)
                continue
            assert action.default is None, (command, action.option_strings, action.default)


def test_cli_module_writes_no_flag_default():
    """The source agrees: no ``add_argument(..., default=<anything but None>)`` in raydal/cli.py."""
    tree = ast.parse((ROOT / "raydal" / "cli.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for kw in node.keywords:
                if kw.arg == "default":
                    assert isinstance(kw.value, ast.Constant) and kw.value.value is None, ast.unparse(node)


def _parse(command, *argv):
    parser, _ = _subparsers()
    return parser.parse_args([command, *argv])


def test_unset_flags_leave_every_command_on_the_declared_defaults(tmp_path):
    """With no flag given, each command hands the library nothing, so the declarations decide."""
    for dataset in list_datasets():
        assert _reader_settings(_parse("prepare", dataset, "root", "out")) == {}
    args = _parse("sweep", "ucmerced", str(tmp_path))
    given = {k: v for k, v in vars(args).items() if k.startswith("sweep.") and v is not None}
    assert given == {}
    args = _parse("export", "state")
    assert all(getattr(args, f.name) is None for f in declared_settings(ExportOptions))


@pytest.mark.parametrize("reader", _readers_with_settings(), ids=lambda r: r.name)
def test_a_readers_flags_reach_its_settings_and_say_its_defaults(reader):
    """Each declared reader setting has a prepare flag that gives its value to the reader, and
    whose help names the declared default; the reader's signature reads the same defaults."""
    _, commands = _subparsers()
    by_dest = {}
    for action in commands["prepare"]._actions:
        by_dest.setdefault(action.dest, action)  # a bool's pair: its --x first, then its off flag
    params = inspect.signature(reader.__init__).parameters
    for f in declared_settings(reader.Settings):
        assert params[f.name].default == declared_default(reader.Settings, f.name), f.name
        action = by_dest[f"reader.{f.name}"]
        assert f.metadata["help"].replace("%", "%%") in action.help
        default = f.default
        if default is not None and not isinstance(default, (tuple, bool)):
            assert f"(default: {default})" in action.help, f.name
    assert [p for p in params if p not in ("self", "root")] == [f.name for f in declared_settings(reader.Settings)]


def test_prepare_flags_reach_the_reader_and_another_readers_flag_is_refused():
    args = _parse("prepare", "treesatai", "root", "out", "--threshold", "0.2", "--band-order", "NIR,R,G,B")
    assert _reader_settings(args) == {"threshold": 0.2, "band_order": ["NIR", "R", "G", "B"]}
    args = _parse("prepare", "bigearthnet", "root", "out", "--keep-snow-cloud", "--bigearthnet-version", "v1")
    assert _reader_settings(args) == {"drop_snow_cloud": False, "version": "v1"}
    args = _parse("prepare", "folder", "root", "out", "--value-range", "0,10000", "--rgb-bands", "3,2,1")
    assert _reader_settings(args) == {"value_range": [0.0, 10000.0], "rgb_bands": ["3", "2", "1"]}
    args = _parse("prepare", "ucmerced", "root", "out", "--threshold", "0.2")
    with pytest.raises(ConfigError, match=r"\['threshold'\] are not settings of the ucmerced reader"):
        _reader_settings(args)


def test_sweep_flags_come_from_the_declared_options(tmp_path):
    _, commands = _subparsers()
    by_dest = {a.dest: a for a in commands["sweep"]._actions}
    for f in declared_settings(SweepOptions):
        if not f.metadata["cli"]:
            continue
        action = by_dest[f"sweep.{f.name}"]
        assert action.default is None and f.metadata["help"] in action.help
    assert by_dest["sweep.metric"].choices is SweepOptions.__dataclass_fields__["metric"].metadata["choices"]
    assert plan_sweep(ALConfig(), {"b": [3]}, tmp_path / "s").options == SweepOptions()
    assert plan_sweep(ALConfig(), {"b": [3]}, tmp_path / "s", gpus_per_trial=1.0).resources == {"CPU": 1.0, "GPU": 1.0}


def test_help_that_names_a_default_reads_it_from_its_owner():
    """Flags that are no declared setting (a function's parameter) state the function's default."""
    from raydal.al import lssync
    from raydal.al.humanloop import import_labels
    from raydal.data.shards import prepare

    _, commands = _subparsers()
    helps = {(c, o): a.help for c, sub in commands.items() for a in sub._actions for o in a.option_strings}
    sig = inspect.signature
    assert f"(default {sig(prepare).parameters['shard_size'].default})" in helps[("prepare", "--shard-size")]
    assert (
        f"(default {sig(import_labels).parameters['on_disagreement'].default})"
        in helps[("import-labels", "--on-disagreement")]
    )
    poll = sig(lssync.Link.follow).parameters["poll_s"].default
    assert f"(default {poll})" in helps[("label-studio", "--poll")]


# -- no declared default written a second time -----------------------------------------------------

#: Declarations whose defaults must appear nowhere else: the run's, the sweep's, the export's, the readers'.
DECLARATIONS = [
    ALConfig,
    ExperimentConfig,
    TrainConfig,
    SweepOptions,
    ExportOptions,
    *[r.Settings for r in _readers_with_settings()],
]
#: Library functions whose parameters carry a run setting's default under their own name.
FORWARD_PASSES = [
    "raydal/distributed/score.py",
    "raydal/distributed/score_data.py",
    "raydal/distributed/predict.py",
    "raydal/distributed/train.py",
    "raydal/predict.py",
]
#: Where a copy would hide: the entry points, the presets, the Python API, the sweep, the forward passes.
SOURCES = [
    "raydal/cli.py",
    "raydal/config.py",
    "raydal/api.py",
    "raydal/al/sweep.py",
    "raydal/distributed/tune.py",
    *FORWARD_PASSES,
]


def _literal_patterns():
    for cls in DECLARATIONS:
        for f in declared_settings(cls):
            default = f.default
            # None, bools and empty strings say nothing by themselves (every optional parameter has one)
            if default is dataclasses.MISSING or default is None or isinstance(default, bool) or default == "":
                continue
            lit = re.escape(repr(default))
            # not followed by more of a number or of a list of values ("--param seed=0,1,2")
            yield cls, f.name, re.compile(rf"""\b{f.name}["']?\s*(=|:)\s*{lit}(?![\w.]|,\d)""")


#: Lines that write a declared default's value on purpose, with the reason.
NOT_COPIES = {
    "exp = dataclasses.replace(config_from_args(args), trials=1)": "a sweep runs one trial per grid point: a rule",
}


def test_no_source_writes_a_declared_default_again():
    """``name=<default>`` / ``"name": <default>`` for a declared setting, outside its declaration
    (``setting(`` lines), is a second copy that would drift."""
    found = []
    for path in SOURCES:
        for no, line in enumerate((ROOT / path).read_text().splitlines(), 1):
            if "setting(" in line or any(line.strip().startswith(ok) for ok in NOT_COPIES):
                continue
            found += [
                f"{path}:{no}: {cls.__name__}.{name}: {line.strip()}"
                for cls, name, pattern in _literal_patterns()
                if pattern.search(line)
            ]
    assert found == []


def test_the_literal_scan_finds_a_copy():
    """The scan above is no test that cannot fail: it finds a planted copy."""
    line = "DEMO = dict(b=20, train=dict(batch_size=10))"
    hits = {(cls.__name__, name) for cls, name, p in _literal_patterns() if p.search(line)}
    assert {("ALConfig", "b"), ("TrainConfig", "batch_size")} <= hits


# -- one range-check helper ---------------------------------------------------------------------------


def test_one_message_form_for_every_range_check():
    with pytest.raises(ConfigError, match=r"^The 'b' parameter of ALConfig must be an int >= 1\. Got 0 instead\.$"):
        ALConfig(b=0)
    with pytest.raises(ConfigError, match=r"^The 'stats_images' parameter of FolderReader must be an int >= 1\. "):
        reader_class("folder")(ROOT, stats_images=0)
    with pytest.raises(ConfigError, match=r"^The 'threshold' parameter of TreeSatAIReader must be a float in \[0, 1\)"):
        reader_class("treesatai")(ROOT, threshold=1.0)
    with pytest.raises(
        ConfigError, match=r"^The 'nomenclature' parameter of BigEarthNetReader must be one of \(19, 43\)"
    ):
        reader_class("bigearthnet")(ROOT, nomenclature=20)
    with pytest.raises(ConfigError, match=r"^The 'num_samples' parameter of run_sweep must be an int >= 1\. Got 0"):
        SweepOptions and plan_sweep(ALConfig(), {"b": [3]}, "s", num_samples=0)
    with pytest.raises(ConfigError, match=r"^Unknown parameter\(s\) \['samples'\] of run_sweep"):
        plan_sweep(ALConfig(), {"b": [3]}, "s", samples=2)
    with pytest.raises(ConfigError, match=r"^The 'preset' parameter must be one of \('paper', 'demo'\)\. Got 'x'"):
        preset_layer("x", "ucmerced")
    assert (
        check_value(3, "k", "f", Interval(int, 1)) == 3 and check_value(None, "k", "f", (1, 2), nullable=True) is None
    )
    with pytest.raises(ConfigError, match=r"^The 'k' parameter of f must be a bool\. Got 1 instead\.$"):
        check_value(1, "k", "f", bool)
    assert str(param_error("x", None, "an int", "y")) == "The 'x' parameter must be an int. Got 'y' instead."


# -- parameters that stand for a run setting read its declaration ------------------------------------

#: parameter (or dataclass field) name -> the ALConfig setting whose default it is.
STANDS_FOR = {
    "batch_size": "score_batch_size",
    "eval_batch_size": "score_batch_size",
    "cpus_per_worker": "cpus_per_worker",
}


def _defaults_standing_for_settings(source: str):
    """``(where, parameter, default node)`` of every parameter or dataclass field named in
    :data:`STANDS_FOR` that has a default, in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            yield from ((node.name, a.arg, d) for a, d in pairs if a.arg in STANDS_FOR)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and item.value is not None:
                    name = getattr(item.target, "id", None)
                    if name in STANDS_FOR:
                        yield node.name, name, item.value


def _copies(source: str) -> list[str]:
    """The defaults among them that are not a read of their setting's declaration (``ALConfig.<setting>``)."""
    return [
        f"{where}({name}={ast.unparse(default)})"
        for where, name, default in _defaults_standing_for_settings(source)
        if not (
            isinstance(default, ast.Attribute)
            and ast.unparse(default.value) == "ALConfig"
            and default.attr == STANDS_FOR[name]
        )
    ]


def test_forward_pass_defaults_read_the_run_settings():
    """Scoring, evaluation and prediction batches default to ``score_batch_size``, Ray Train
    workers' CPUs to ``cpus_per_worker``: each reads the declaration, none writes a number."""
    found = []
    for path in FORWARD_PASSES:
        found += [f"{path}: {c}" for c in _copies((ROOT / path).read_text())]
    assert found == []
    from raydal import predict
    from raydal.distributed import predict as dpredict
    from raydal.distributed import score, score_data, train

    batch = declared_default(ALConfig, "score_batch_size")
    for fn, name in [
        (score.score_pool_ray, "batch_size"),
        (score_data.score_pool_data, "batch_size"),
        (dpredict.predict_arrays_ray, "batch_size"),
        (predict.predict_arrays_local, "batch_size"),
        (predict.predict, "batch_size"),
        (train.train_with_ray, "eval_batch_size"),
    ]:
        assert inspect.signature(fn).parameters[name].default == batch, fn.__name__
    assert train.PoolScoring("random", 0).batch_size == batch
    cpus = inspect.signature(train.train_with_ray).parameters["cpus_per_worker"].default
    assert cpus == declared_default(ALConfig, "cpus_per_worker")


def test_the_forward_pass_scan_finds_a_copy():
    planted = """
def score(x, batch_size: int = 64, *, cpus_per_worker=0.5, eval_batch_size=ALConfig.score_batch_size): ...
@dataclass
class P:
    batch_size: int = 64
"""
    assert _copies(planted) == ["score(batch_size=64)", "score(cpus_per_worker=0.5)", "P(batch_size=64)"]


def test_library_range_checks_speak_the_one_form(tmp_path):
    """The query, model, scoring, shard and predict functions word a bad parameter as the configs
    do (settings.param_error), with their own exception types, and take NumPy counts as ints."""
    import numpy as np
    import torch

    from raydal.data.shards import iter_batches, prepare
    from raydal.distributed.score_data import actor_pool_sizes
    from raydal.exceptions import ModelError
    from raydal.models.factory import ModelSpec
    from raydal.models.loss_prediction import random_pairs
    from raydal.models.weights import adapt_first_conv_weight
    from raydal.predict import predict
    from raydal.query.candidates import TopKCandidates
    from raydal.query.clustering import kmeans, resolve_backend
    from raydal.query.diversity import select_diverse

    form = r"^The '{}' parameter of {} must be {}\. Got {} instead\.$"
    cases = [
        (lambda: TopKCandidates(-1), "k", "TopKCandidates", "an int >= 0", "-1"),
        (lambda: kmeans(np.zeros((5, 2)), 6), "k", r"kmeans \(on 5 rows\)", r"an int in \[1, 5\]", "6"),
        (lambda: resolve_backend("gpu"), "backend", "resolve_backend", "one of .*", "'gpu'"),
        (lambda: actor_pool_sizes(2, 3), "min_workers", "score_pool_data", r"an int <= workers \(2\)", "3"),
        (lambda: ModelSpec("smallcnn", 0, 3), "num_classes", "ModelSpec", "an int >= 1", "0"),
        (lambda: random_pairs(-2, None), "batch_size", "random_pairs", "an int >= 0", "-2"),
        (lambda: prepare("ucmerced", tmp_path, tmp_path / "o", shard_size=0), "shard_size", "prepare", ".*", "0"),
        (lambda: list(iter_batches(None, "pool", 0)), "batch_size", "iter_batches", "an int >= 1", "0"),
        (lambda: predict("m", "i", tmp_path, executor="gpu"), "executor", "predict", "one of .*", "'gpu'"),
        (
            lambda: select_diverse(np.zeros(3), np.zeros((3, 2)), 1, 2, space="raw"),
            "space",
            "select_diverse",
            "one of .*",
            "'raw'",
        ),
    ]
    for call, name, owner, allowed, got in cases:
        with pytest.raises(ConfigError, match=form.format(name, owner, allowed, got)):
            call()
    with pytest.raises(ModelError, match=form.format("rgb_bands", "adapt_first_conv_weight", r".*\[0, 4\).*", ".*")):
        adapt_first_conv_weight(torch.zeros(8, 3, 3, 3), 4, rgb_bands=(0, 0, 1))
    assert TopKCandidates(np.int64(3)).k == 3 and type(TopKCandidates(np.int64(3)).k) is int


def test_the_sweep_docs_show_every_option_with_its_declared_default():
    """docs/sweeps.md's option table is SweepOptions: every field, its flag and its default."""
    rows = {}
    for line in (ROOT / "docs" / "sweeps.md").read_text().splitlines():
        m = re.match(r"^\| `(\w+)` \((`--[\w-]+`|Python only)\) \| `([^`]*)` \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    assert list(rows) == [f.name for f in declared_settings(SweepOptions)]
    for f in declared_settings(SweepOptions):
        flag, default = rows[f.name]
        assert default == str(f.default), f.name
        assert flag == ("`--" + f.name.replace("_", "-") + "`" if f.metadata["cli"] else "Python only"), f.name
