"""The run's configuration: validated dataclasses, the presets, and the one function that merges them.

``ALConfig`` describes one active-learning run (one trial); ``ExperimentConfig`` adds
what ``raydal run`` needs around it (the number of trials, where the archive is).
Every field is declared once with :func:`raydal.settings.setting`: its default, its
valid range or choices (strategy, backbone, dataset and executor names come from their
registries) and its help text. ``raydal run``/``jobs/al_*.py``/``raydal sweep`` derive
their flags from these declarations, and :func:`resolve_config` merges the layers

    built-in defaults < dataset protocol (paper preset) < --preset demo < --config FILE < flags

in one place. Training hyperparameters are ``raydal.training.TrainConfig`` fields, kept
in ``ALConfig.train`` as a plain mapping.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raydal.exceptions import ConfigError, RaydalError
from raydal.settings import (
    EXECUTION,
    IDENTITY,
    RESULT,
    Interval,
    check_settings,
    check_value,
    declared_default,
    field_kind,
    fields_of_kind,
    make_settings,
    param_error,
    setting,
)
from raydal.utils import dataclass_from_dict

MODES = ("simulation", "human")
PRESETS = ("paper", "demo")
#: "auto": the LL loss-prediction module only for strategies that rank by it; "on": always (ablation).
LL_MODULE_MODES = ("auto", "on")

#: The settings the paper's protocol fixes for a dataset (its training protocol: docs/models.md,
#: "Training protocol"); the ``paper`` preset of a dataset in :data:`PAPER_PRESETS` gives every one of
#: them, so ``--print-config`` marks them "paper".
PAPER_PROTOCOL = (
    "b",
    "m",
    "initial_labeled",
    "label_budget",
    "trials",
    "image_size",
    "warm_start",
    "train.lr",
    "train.epochs",
    "train.batch_size",
)
_TREESATAI = dict(
    b=1000,
    m=4,
    initial_labeled=1000,
    label_budget=18000,
    trials=3,
    image_size=288,
    warm_start=False,
    train=dict(lr=0.01, epochs=200, batch_size=100),
)
#: The paper's protocol per dataset, as it differs from the built-in defaults (which are
#: the paper's UCMerced values: b 20, m 3, 40 initial labels, warm start, 100 epochs of
#: batch 10 at lr 0.025); the rest of :data:`PAPER_PROTOCOL` comes from the declarations
#: (:func:`preset_layer`). The ``paper`` preset applies under every run of that dataset.
#: BigEarthNet is not in the paper: it reuses TreeSatAI's protocol (1000 initial + b = 1000
#: up to 18000 labels, cold start) at its 120 px and the built-in 100 epochs.
PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "ucmerced": dict(label_budget=400, trials=3, image_size=256),
    "treesatai": _TREESATAI,
    "bigearthnet": {
        **_TREESATAI,
        "image_size": 120,
        "train": {k: v for k, v in _TREESATAI["train"].items() if k != "epochs"},
    },
}

#: What the paper's protocol needs but the paper does not state: raydal's choices,
#: which ``--print-config`` marks as such while they come from the defaults or the paper preset.
PAPER_UNSTATED: dict[str, str] = {
    "weights": "DenseNet121 trained from scratch, no pretrained weights",
    "train.momentum": "SGD momentum",
    "train.weight_decay": "SGD weight decay",
    "train.amp": "bf16 autocast on CUDA, fp32 on CPU",
}
#: What ``--print-config`` says about a dataset's paper preset beyond :data:`PAPER_UNSTATED`.
PAPER_PRESET_NOTES: dict[str, str] = {
    "bigearthnet": "BigEarthNet is not in the paper: its paper preset is TreeSatAI's protocol, reused",
}

#: ``--preset demo`` as it differs from the built-in defaults (:data:`DEMO_PRESET` is the whole preset).
_DEMO = dict(
    backbone="smallcnn",
    image_size=32,
    fake_n=840,
    iterations=4,
    num_workers=2,
    cpus_per_worker=0.5,
    parallel_trials=2,  # the strategy and --compare's baseline side by side (1 CPU each)
    train=dict(epochs=8, batch_size=16, lr=0.05),
)
#: What ``--preset demo`` resets to the built-in defaults over the dataset's paper protocol.
DEMO_BUILT_IN = ("b", "m", "initial_labeled", "trials")

#: The two stopping criteria: a layer that sets either replaces both (see :func:`merge_layers`).
STOP_KEYS = ("iterations", "label_budget")
#: TrainConfig fields that follow the run's field of the same name unless set in ``train``.
#: The mappings of a config whose layers merge field by field: the training settings
#: (TrainConfig fields) and the dataset reader's settings (ExperimentConfig.reader).
NESTED_KEYS = ("train", "reader")
RUN_OWNED_TRAIN_FIELDS = ("seed", "warm_start")


# Registries own the names; asked on first use so that declaring a field imports nothing.
def _datasets() -> list[str]:
    from raydal.data import list_datasets

    return list_datasets()


def _strategies() -> list[str]:
    from raydal.query import list_strategies

    return list_strategies()


def _backbones() -> list[str]:
    from raydal.models import list_models

    return list_models()


def _executors() -> list[str]:
    from raydal.al.executor import list_executors

    return list_executors()


def _clustering_backends() -> tuple[str, ...]:
    from raydal.query.clustering import BACKENDS

    return BACKENDS


def _check(cond: bool, cls: str, name: str, what: str, value: Any) -> None:
    if not cond:
        raise param_error(name, cls, what, value)


@dataclass
class ALConfig:
    """One active-learning run (one trial); validated when built.

    ``train`` holds fields of ``raydal.training.TrainConfig`` (lr, epochs, batch_size,
    ...); it is completed with TrainConfig's defaults when the config is built, so two
    configs that train alike compare (and fingerprint) alike.
    """

    # Each field's kind (raydal.settings: RESULT, EXECUTION, IDENTITY) decides the
    # fingerprint, what a resume may change, the report's curves and the sweep's keys.
    # -- which data, who labels (identity)
    dataset: str = setting("ucmerced", "the archive", choices=_datasets, cli=False, kind=IDENTITY)
    shards_dir: str = setting(
        "",
        "prepared Parquet shards (made there if missing; default: shards-DATASET next to the state dir)",
        kind=IDENTITY,
    )
    mode: str = setting(
        "simulation",
        "simulation: the archive's labels answer queries; human: annotators do (raydal export / import-labels)",
        choices=MODES,
        kind=IDENTITY,
    )
    # -- what the run computes (result)
    strategy: str = setting("mge+clustering", "query function", choices=_strategies, kind=RESULT)
    b: int = setting(20, "samples labeled per query round", Interval(int, 1), kind=RESULT)
    m: int = setting(3, "candidate multiplier: cluster the m*b most uncertain", Interval(int, 1), kind=RESULT)
    initial_labeled: int = setting(40, "size of the random initial labeled set", Interval(int, 1), kind=RESULT)
    seed: int = setting(0, "seed of the initial set, training and k-means++", Interval(int, 0), kind=RESULT)
    backbone: str = setting("densenet121", "backbone network", choices=_backbones, kind=RESULT)
    weights: str | None = setting(None, "local state-dict file to initialise the backbone from", kind=RESULT)
    ll_module: str = setting(
        "auto",
        "the LL loss-prediction module: auto (built and trained only for "
        "strategies that rank by it, as in the paper) or on (every strategy: an ablation)",
        choices=LL_MODULE_MODES,
        kind=RESULT,
    )
    warm_start: bool = setting(
        True,
        "start each iteration from the previous model (--cold-start: fresh init)",
        flag="--warm-start",
        off_flag="--cold-start",
        kind=RESULT,
    )
    # the backends' k-means differ (and "auto" picks by what is installed)
    clustering_backend: str = setting(
        "auto", "k-means backend of the diversity step", choices=_clustering_backends, kind=RESULT
    )
    # switches beyond the paper (defaults are the paper's), to explain a result: see docs/query.md
    mge_feature_norm: bool = setting(
        True,
        "MGE with the ||h|| factor (the paper; --mge-feature-norm-off: rank by ||p - y_hat|| alone, beyond the paper)",
        flag="--mge-feature-norm",
        off_flag="--mge-feature-norm-off",
        kind=RESULT,
    )
    cluster_features: str = setting(
        "penultimate",
        "space the diversity step clusters in: penultimate (features h, the paper), normalized "
        "(h / ||h||) or gradient (MGE's gradient embedding (p - y_hat) h^T); the last two beyond the paper",
        choices=("penultimate", "normalized", "gradient"),
        kind=RESULT,
    )
    eval_max_samples: int | None = setting(
        None,
        "evaluate val and test each on a fixed seeded subsample of at "
        "most this many rows, the same every iteration (None: every row, the "
        "paper's protocol); the history records n_samples, split_rows and "
        "subsample_seed",
        Interval(int, 1),
        kind=RESULT,
    )
    # TrainConfig fields; each declares its own kind there (all but eval_every change results)
    train: dict[str, Any] = setting(
        default_factory=dict, help="training settings: TrainConfig fields", cli=False, kind=RESULT
    )
    # Where the run executes, yet results: the Ray executor trains on num_workers Ray Train
    # workers, each on batch_size // num_workers rows of a batch (the remainder dropped),
    # reading its share with its own shuffle; the local one trains in this process on
    # whole batches of the labeled set held in memory, shuffled another way. use_gpu puts
    # the Ray workers on GPUs, where amp "auto" means bf16 autocast. (The local executor
    # uses CUDA whenever the machine has it, whatever use_gpu says.)
    executor: str = setting(
        "ray",
        "ray: Ray Train + Ray Data from a driver actor; local: all in this process "
        "(it batches and shuffles its own way: results differ from ray's)",
        choices=_executors,
        kind=RESULT,
    )
    num_workers: int = setting(
        1,
        "Ray Train workers; each trains on batch_size // num_workers rows of a batch, so a change changes results",
        Interval(int, 1),
        kind=RESULT,
    )
    use_gpu: bool = setting(
        False,
        "train and score on GPUs (with amp auto: in bf16, so results differ from CPU's)",
        flag="--gpu",
        kind=RESULT,
    )
    # -- how long, where, how fast (execution: free to change on resume)
    iterations: int | None = setting(
        5, "stop after this many query rounds (None: run until label_budget)", Interval(int, 0), kind=EXECUTION
    )
    label_budget: int | None = setting(
        None,
        "stop once this many samples are labeled (None: run for iterations rounds)",
        Interval(int, 1),
        kind=EXECUTION,
    )
    stop_when: str | None = setting(
        None,
        "stable: also stop once the models' predictions on a fixed unlabeled "
        "stop set agree (mean Cohen's kappa of the last 3 consecutive pairs >= 0.99, "
        "Bloodgood & Vijay-Shanker 2009; raydal.al.stopping). None: advice only",
        choices=("stable",),
        kind=EXECUTION,
    )
    state_dir: str = setting(
        "", "where the run keeps its state, checkpoints and reports (default runs/DATASET)", kind=EXECUTION
    )
    cpus_per_worker: float | None = setting(
        None,
        "CPUs per Ray Train worker (None: 1, or less where that leaves no CPU for Ray Data reads)",
        Interval(float, 0, None, "neither"),
        kind=EXECUTION,
    )
    keep_workers: bool = setting(
        True,
        "keep the Ray Train worker group from one AL iteration to the next (one start per run, "
        "released when the run ends or waits for labels); off: a new group every iteration",
        kind=EXECUTION,
    )
    # Where the pool is scored (the training workers, Ray Data actors): the same batches, the
    # same scores bit for bit.
    score_workers: int = setting(
        0,
        "pool scoring apart from training: 0 scores in the Ray Train workers after "
        "training; N streams the pool through N Ray Data actors (CPU, or one GPU each "
        "with --gpu), whatever num_workers is",
        Interval(int, 0),
        kind=EXECUTION,
    )
    score_workers_min: int | None = setting(
        None,
        "fewest Ray Data scoring actors (None: score_workers, a fixed "
        "pool; fewer: the pool starts there and grows as an autoscaling "
        "cluster adds nodes)",
        Interval(int, 1),
        kind=EXECUTION,
    )
    score_concurrency: int = setting(
        1,
        "warm scoring actors for a query whose scores the training run did not make (score_workers 0 only)",
        Interval(int, 1),
        kind=EXECUTION,
    )
    # Scoring and evaluation run the model in eval mode, one row independent of the others;
    # the batch size changes at most the last bits of a score (as the thread count does).
    score_batch_size: int = setting(64, "images per scoring and evaluation batch", Interval(int, 1), kind=EXECUTION)
    storage_path: str | None = setting(
        None,
        "Ray Train storage: a folder every node mounts, or a URI (default: the state dir's ray/ "
        "folder; next to each iteration's checkpoint with --no-keep-workers)",
        kind=EXECUTION,
    )

    def __post_init__(self) -> None:
        cls = "ALConfig"
        check_settings(self)  # types, ranges, and names against the registries
        if not self.state_dir:
            self.state_dir = f"runs/{self.dataset}"
        if not self.shards_dir:
            self.shards_dir = _sibling(self.state_dir, f"shards-{self.dataset}")
        if self.score_workers_min is not None:
            _check(
                self.score_workers > 0 and self.score_workers_min <= self.score_workers,
                cls,
                "score_workers_min",
                f"None or an int in [1, score_workers ({self.score_workers})], with score_workers >= 1",
                self.score_workers_min,
            )
        if self.label_budget is not None:
            _check(
                self.label_budget >= self.initial_labeled,
                cls,
                "label_budget",
                f"an int >= initial_labeled ({self.initial_labeled}) or None",
                self.label_budget,
            )
        _check(
            self.iterations is not None or self.label_budget is not None,
            cls,
            "iterations",
            "set when label_budget is None (otherwise the run never ends)",
            self.iterations,
        )
        full = self.train_config().to_dict()
        self.train = {k: v for k, v in full.items() if k not in RUN_OWNED_TRAIN_FIELDS or k in self.train}

    # -- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ALConfig":
        return dataclass_from_dict(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ALConfig":
        return cls.from_dict(load_config_file(path))

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=True))

    def result_fields(self) -> dict[str, Any]:
        """The fields that decide what the run computes and on which data (kind result or
        identity), not where, how fast or how long it runs. ``train`` is the whole mapping
        (a changed training setting shows as ``train``); :meth:`fingerprint` leaves out its
        execution-only fields."""
        data = self.to_dict()
        return {k: data[k] for k in fields_of_kind(ALConfig, RESULT, IDENTITY)}

    def fingerprint(self) -> str:
        """A short hash of :meth:`result_fields` (of ``train``, its result fields): equal
        fingerprints, same experiment. A resume under another fingerprint is refused
        without ``--fork`` (``raydal.al.loop``)."""
        from raydal.training.config import TrainConfig

        fields = self.result_fields()
        fields["train"] = {k: v for k, v in self.train.items() if field_kind(TrainConfig, k) == RESULT}
        blob = json.dumps(fields, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def changed_result_settings(self, old: Mapping[str, Any]) -> list[str]:
        """The result settings (``train.*`` one by one) in which the run config ``old``
        (a state's ``to_dict()``) differs from this one, sorted.

        A setting that ``old`` lacks (it was written before the setting existed) counts
        as unchanged when this config holds the setting's default.
        """
        from raydal.training.config import TrainConfig

        defaults = {f.name: f.default for f in dataclasses.fields(ALConfig)}
        train_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        mine = self.result_fields()
        changed = [k for k, v in mine.items() if k != "train" and old.get(k, defaults.get(k)) != v]
        old_train = old.get("train") or {}
        for k, v in self.train.items():
            if field_kind(TrainConfig, k) == RESULT and old_train.get(k, train_defaults.get(k)) != v:
                changed.append(f"train.{k}")
        return sorted(changed)

    def train_config(self):
        """The ``raydal.training.TrainConfig`` of this run (seeded from ``seed``)."""
        from raydal.training.config import TrainConfig

        kwargs = {name: getattr(self, name) for name in RUN_OWNED_TRAIN_FIELDS}
        kwargs.update(self.train)
        return TrainConfig.from_dict(kwargs)


@dataclass
class ExperimentConfig:
    """An experiment as ``raydal run`` runs it: ``trials`` runs of ``run`` (seeds seed, seed+1, ...).

    Written as one flat YAML mapping: the keys below beside the ALConfig fields
    (:meth:`to_dict`); ``--print-config`` prints it and ``--config`` loads it back.
    """

    run: ALConfig
    # more trials, or a comparison run beside them, leave each trial's results as they are
    trials: int = setting(
        1, "repeat the run with seeds seed..seed+trials-1 (the paper: 3)", Interval(int, 1), kind=EXECUTION
    )
    parallel_trials: int = setting(
        1,
        "trials run at once on Ray (the --compare baseline's beside the strategy's), each in its own "
        "driver actor, their Ray Train runs overlapping; every trial is seeded on its own, so the "
        "results are those of one after another (the local executor runs them one after another)",
        Interval(int, 1),
        kind=EXECUTION,
    )
    # the archive the shards are prepared from (once, into shards_dir: the run's identity)
    data_root: str | None = setting(
        None, "folder of a real archive; without it a fake archive is generated", kind=IDENTITY
    )
    image_size: int | None = setting(
        None,
        "model input side in pixels when preparing shards (None: the archive's own)",
        Interval(int, 1),
        flag="--size",
        kind=IDENTITY,
    )
    fake_n: int | None = setting(
        None, "images in the generated fake archive (None: per dataset)", Interval(int, 1), kind=IDENTITY
    )
    compare: str | None = setting(
        None,
        "also run this strategy (e.g. random) with the same seeds and initial "
        "labeled sets into STATE_DIR-NAME, and report both on one plot with the "
        "difference of areas under the micro/macro F1 curves",
        choices=_strategies,
        kind=EXECUTION,
    )
    # the dataset reader's settings when the shards are prepared (raydal prepare's reader flags,
    # which raydal run takes too); the flags are the readers' declarations, so no flag of its own
    reader: dict = setting(
        help="settings of the dataset's reader when the shards are prepared (as raydal prepare's "
        "reader flags), e.g. {threshold: 0.2} for treesatai",
        default_factory=dict,
        cli=False,
        kind=IDENTITY,
    )

    def __post_init__(self) -> None:
        check_settings(self)
        if self.reader:
            from raydal.data import reader_class

            cls = reader_class(self.run.dataset)
            if cls.Settings is None:
                raise ConfigError(
                    f"The {self.run.dataset} reader has no settings, yet 'reader' gives {sorted(self.reader)}. "
                    "Fix: leave 'reader' (and the reader flags) out for this dataset."
                )
            make_settings(cls.Settings, self.reader, cls.__name__)

    @staticmethod
    def keys() -> tuple[str, ...]:
        """The experiment-level keys of the flat mapping (the rest are ALConfig fields)."""
        return tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "run")

    def to_dict(self) -> dict[str, Any]:
        """Flat: the experiment keys, then the ALConfig fields."""
        return {**{k: getattr(self, k) for k in self.keys()}, **self.run.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExperimentConfig":
        data = dict(data)
        known = set(cls.keys()) | {f.name for f in dataclasses.fields(ALConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown config field(s) {unknown}. Valid fields: {sorted(known)} "
                "(training settings go under 'train:')."
            )
        outer = {k: data.pop(k) for k in cls.keys() if k in data}
        return cls(run=ALConfig.from_dict(data), **outer)

    def to_yaml(self, sources: Mapping[str, str] | None = None) -> str:
        """YAML that ``--config`` loads back to this config, with a summary in comments.

        sources: flat key -> where the value comes from (:func:`config_sources`); each
        value then ends with it as a comment (keys not in it: "built-in"), and the
        paper protocol's unstated choices (:data:`PAPER_UNSTATED`) are marked as raydal's.
        """
        run = self.run
        seeds = f"seed {run.seed}" if self.trials == 1 else f"seeds {run.seed}..{run.seed + self.trials - 1}"
        head = [
            f"# raydal {run.dataset}: {self.trials} trial(s) ({seeds}); {self.stopping_rule()}",
            "# resolved configuration: load it back with --config FILE",
        ]
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, width=math.inf)
        if sources is None:
            return "\n".join(head) + "\n" + body
        paper = run.dataset in PAPER_PRESETS
        head.append(
            "# after each value, its source: built-in (raydal's default, the paper's value wherever the "
            f"paper states one), paper (the paper's protocol for {run.dataset}), preset (--preset), "
            "file (--config), flag (the command line)"
        )
        unstated = [k for k in PAPER_UNSTATED if paper and sources.get(k, "built-in") in ("built-in", "paper")]
        if unstated:
            flat = {**self.to_dict(), **{f"train.{k}": v for k, v in run.train.items()}}
            head.append(
                "# not stated by the paper, raydal's choices under its protocol: "
                + "; ".join(f"{k} {json.dumps(flat[k])} ({PAPER_UNSTATED[k]})" for k in unstated)
            )
        if paper and run.dataset in PAPER_PRESET_NOTES:
            head.append(f"# paper: {PAPER_PRESET_NOTES[run.dataset]}")
        lines, head_key = [], ""
        for line in body.splitlines():
            key = line.split(":", 1)[0].strip()
            if not line.startswith(" "):
                head_key = key
            parent = f"{head_key}." if line.startswith("  ") else ""
            if line.rstrip().endswith(":") or key.startswith("-"):  # a mapping's or list's head, a list item
                lines.append(line)
                continue
            source = sources.get(parent + key, "built-in")
            note = "; not stated by the paper: raydal's choice" if parent + key in unstated else ""
            lines.append(f"{line}  # {source}{note}")
        return "\n".join(head + lines) + "\n"

    def stopping_rule(self) -> str:
        """In words: where each trial stops ("stops at 400 labels (40 initial + 18 rounds of 20)"),
        or earlier if the pool runs out."""
        run = self.run
        known = _archive_labeled_pool(run) if run.mode == "human" else 0
        initial = max(run.initial_labeled, known or 0)
        rounds = [
            r
            for r in (
                run.iterations,
                None if run.label_budget is None else max(0, math.ceil((run.label_budget - initial) / run.b)),
            )
            if r is not None
        ]
        n = min(rounds)
        labels = initial + n * run.b
        if run.label_budget is not None:
            labels = max(min(labels, run.label_budget), initial)
        if known is None:  # shards not prepared yet: the archive's labeled pool images are not known
            return (
                f"stops at at least {labels} labels ({run.initial_labeled} initial, or more where the archive "
                f"labels more pool images, + {n} rounds of {run.b})"
            )
        start = (
            f"{initial} initial: the pool images labeled in the archive"
            if known > run.initial_labeled
            else f"{initial} initial"
        )
        return f"stops at {labels} labels ({start} + {n} rounds of {run.b})"


def _archive_labeled_pool(run: ALConfig) -> int | None:
    """How many pool images the prepared archive labels already (a human-mode run's initial set
    holds them all, ``ActiveLearner._init``); None when the shards are not prepared yet."""
    from raydal.data.shards import load_manifest

    try:
        manifest = load_manifest(run.shards_dir)
    except (RaydalError, OSError):
        return None
    unlabeled = manifest.unlabeled.get("pool", 0)
    return manifest.splits["pool"]["count"] - unlabeled if unlabeled else 0


def setting_kind(key: str) -> str | None:
    """The kind (``raydal.settings.RESULT``, ...) of a run setting by its key in a flat
    config: an ALConfig field (``b``) or ``train.<TrainConfig field>``. None for a key no
    config declares (a field an older raydal wrote into a state)."""
    from raydal.training.config import TrainConfig

    cls, name = (TrainConfig, key[len("train.") :]) if key.startswith("train.") else (ALConfig, key)
    if name not in {f.name for f in dataclasses.fields(cls)}:
        return None
    return field_kind(cls, name)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (ALConfig fields, ``train:``, experiment keys)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"Config file {path} does not exist: check the path.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(k) or {}, dict) for k in NESTED_KEYS):
        raise ConfigError(
            f"Config file {path} must hold a mapping of config fields (training settings "
            "as a mapping under 'train:', the reader's under 'reader:'); see `raydal run DATASET --print-config`."
        )
    return data


def default_of(key: str) -> Any:
    """The declared default of a flat config key: an ExperimentConfig or ALConfig field, or
    ``train.<TrainConfig field>``."""
    from raydal.training.config import TrainConfig

    if key.startswith("train."):
        return declared_default(TrainConfig, key[len("train.") :])
    return declared_default(ExperimentConfig if key in ExperimentConfig.keys() else ALConfig, key)


def _with_defaults(layer: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``layer`` with each of the flat ``keys`` it does not set at its declared default."""
    out = copy.deepcopy(dict(layer))
    for key in keys:
        if key.startswith("train."):
            out.setdefault("train", {}).setdefault(key[len("train.") :], default_of(key))
        else:
            out.setdefault(key, default_of(key))
    return out


def preset_layer(name: str, dataset: str) -> dict[str, Any]:
    """The settings of preset ``name`` for ``dataset``: "paper", the dataset's protocol
    (every :data:`PAPER_PROTOCOL` setting; nothing for a dataset the paper has no protocol
    for); "demo", :data:`DEMO_PRESET` with the built-in :data:`DEMO_BUILT_IN`."""
    check_value(name, "preset", None, PRESETS)
    if name == "paper":
        return _with_defaults(PAPER_PRESETS[dataset], PAPER_PROTOCOL) if dataset in PAPER_PRESETS else {}
    return copy.deepcopy(DEMO_PRESET)


#: ``--preset demo``: a small model on a small generated archive, a few minutes on 2 CPU cores;
#: the built-in :data:`DEMO_BUILT_IN` settings whatever the dataset's protocol says.
DEMO_PRESET: dict[str, Any] = _with_defaults(_DEMO, DEMO_BUILT_IN)


def merge_layers(layers: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge config layers, later ones winning key by key (``train`` and ``reader`` field by field).

    The stopping rule is one setting: a layer that gives ``iterations`` or
    ``label_budget`` replaces both (the one it leaves out becomes None), so
    ``--label-budget 200`` over a preset that runs 4 rounds runs to 200 labels.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        layer = dict(layer)
        if any(k in layer for k in STOP_KEYS):
            out.update({k: None for k in STOP_KEYS})
        nested = {key: layer.pop(key, None) or {} for key in NESTED_KEYS}
        out.update(layer)
        for key, values in nested.items():
            if values:
                out[key] = {**out.get(key, {}), **values}
    return out


#: Where a resolved value comes from, lowest layer first (``--print-config`` marks each value).
SOURCES = ("built-in", "paper", "preset", "file", "flag")


def config_layers(
    dataset: str,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The layers :func:`resolve_config` merges, lowest first, each with its source
    (:data:`SOURCES`; the dataset argument counts as a flag)."""
    layers = [("flag", {"dataset": dataset}), ("paper", preset_layer("paper", dataset))]
    if preset is not None and preset != "paper":
        layers.append(("preset", preset_layer(preset, dataset)))
    if config_file is not None:
        data = load_config_file(config_file)
        if data.get("dataset", dataset) != dataset:
            raise ConfigError(
                f"Config file {config_file} is for dataset {data['dataset']!r}, not {dataset!r}: "
                f"run `raydal run {data['dataset']} --config {config_file}` or change its 'dataset'."
            )
        layers.append(("file", data))
    if overrides:
        layers.append(("flag", dict(overrides)))
    return layers


def resolve_config(
    dataset: str,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """The experiment from its layers, lowest first:

    built-in defaults (the dataclasses) < the dataset's protocol (:data:`PAPER_PRESETS`)
    < ``preset`` ("demo"; "paper" adds nothing) < ``config_file`` < ``overrides``
    (explicit flags: only the given ones, ``train`` as a nested mapping).
    ``raydal run`` and ``raydal.Learner`` both resolve here.

    Raises:
        ConfigError: an unknown field, name or preset, a value out of range, or a config
            file written for another dataset; before anything runs.
    """
    layers = config_layers(dataset, preset, config_file, overrides)
    return ExperimentConfig.from_dict(merge_layers([layer for _, layer in layers]))


def config_sources(
    dataset: str,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Where each value of :func:`resolve_config` comes from, by flat key (``b``, ``train.lr``,
    ``reader.threshold``):
    the last layer that sets it, else "built-in". A layer that sets one stopping criterion
    sets both (:func:`merge_layers`)."""
    out: dict[str, str] = {}
    for source, layer in config_layers(dataset, preset, config_file, overrides):
        if any(k in layer for k in STOP_KEYS):
            out.update({k: source for k in STOP_KEYS})
        for key, value in layer.items():
            if key in NESTED_KEYS:
                out.update({f"{key}.{k}": source for k in value or {}})
                if not value:  # written empty (reader: {}): the source of that line
                    out[key] = source
            else:
                out[key] = source
    return out


def _sibling(location: str, name: str) -> str:
    """``name`` next to ``location``: a local path, or a URI kept a URI (``s3://b/runs/x`` ->
    ``s3://b/runs/name``; ``Path`` would turn ``s3://`` into ``s3:/``)."""
    from raydal.utils import is_uri

    if is_uri(location):
        head, _, _ = location.rstrip("/").rpartition("/")
        return f"{head}/{name}" if "://" in head else f"{location.rstrip('/')}/{name}"
    return str(Path(location).parent / name)
