"""The active-learning run's configuration: validated dataclasses, loadable from YAML.

``ALConfig`` composes everything one run needs. Training hyperparameters live in
``raydal.training.TrainConfig`` and are kept here as a plain mapping so this module
imports no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raydal.exceptions import ConfigError
from raydal.utils import dataclass_from_dict

MODES = ("simulation", "human")
EXECUTORS = ("local", "ray")

#: The paper's protocol per dataset (method.md, "Training protocol in the paper").
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ucmerced": dict(
        b=20, m=3, initial_labeled=40, image_size=256, warm_start=True,
        train=dict(lr=0.025, epochs=100, batch_size=10),
    ),
    "treesatai": dict(
        b=1000, m=4, initial_labeled=1000, image_size=288, warm_start=False,
        train=dict(lr=0.01, epochs=200, batch_size=100),
    ),
    "bigearthnet": dict(
        b=1000, m=4, initial_labeled=1000, image_size=120, warm_start=False,
        train=dict(lr=0.01, epochs=100, batch_size=100),
    ),
}

#: Fields that do not change results: a resumed run may change them freely.
_EXECUTION_FIELDS = frozenset(
    {"state_dir", "executor", "num_workers", "use_gpu", "cpus_per_worker",
     "score_concurrency", "score_batch_size", "storage_path", "iterations",
     "label_budget"}
)


def _check(cond: bool, cls: str, name: str, what: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"The '{name}' parameter of {cls} must be {what}. Got {value!r} instead.")


@dataclass
class ALConfig:
    """One active-learning run (one trial).

    Attributes mirror the CLI flags of ``jobs/al_*.py``; ``train`` holds the
    fields of ``raydal.training.TrainConfig`` (lr, epochs, batch_size, ...).
    """

    dataset: str = "ucmerced"
    #: Folder of the prepared Parquet shards (``raydal prepare`` output).
    shards_dir: str = ""
    #: Where the run keeps its state, checkpoints and reports.
    state_dir: str = "runs/al"
    mode: str = "simulation"
    strategy: str = "mge+clustering"
    b: int = 20
    m: int = 3
    initial_labeled: int = 40
    #: Stop after this many query rounds (``None``: until ``label_budget``).
    iterations: int | None = 5
    #: Stop once this many samples are labeled (``None``: until ``iterations``).
    label_budget: int | None = None
    seed: int = 0
    backbone: str = "densenet121"
    weights: str | None = None
    warm_start: bool = True
    clustering_backend: str = "auto"
    train: dict[str, Any] = field(default_factory=dict)
    # execution (may change between resumes)
    executor: str = "ray"
    num_workers: int = 1
    use_gpu: bool = False
    #: CPUs per Ray Train worker; None: 1, or less where that leaves no CPU for Ray Data reads.
    cpus_per_worker: float | None = None
    score_concurrency: int = 1
    score_batch_size: int = 64
    storage_path: str | None = None

    def __post_init__(self) -> None:
        cls = "ALConfig"
        _check(self.mode in MODES, cls, "mode", f"one of {MODES}", self.mode)
        _check(self.executor in EXECUTORS, cls, "executor", f"one of {EXECUTORS}", self.executor)
        for name in ("b", "m", "initial_labeled", "num_workers", "score_concurrency", "score_batch_size"):
            v = getattr(self, name)
            _check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, cls, name, "an int >= 1", v)
        if self.iterations is not None:
            _check(isinstance(self.iterations, int) and self.iterations >= 0, cls, "iterations",
                   "an int >= 0 or None", self.iterations)
        if self.label_budget is not None:
            _check(isinstance(self.label_budget, int) and self.label_budget >= self.initial_labeled, cls,
                   "label_budget", f"an int >= initial_labeled ({self.initial_labeled}) or None",
                   self.label_budget)
        _check(self.iterations is not None or self.label_budget is not None, cls, "iterations",
               "set when label_budget is None (otherwise the run never ends)", self.iterations)
        _check(self.cpus_per_worker is None or self.cpus_per_worker > 0, cls, "cpus_per_worker",
               "a number > 0 or None (automatic)", self.cpus_per_worker)
        _check(bool(self.shards_dir), cls, "shards_dir", "the folder written by `raydal prepare`",
               self.shards_dir)
        _check(isinstance(self.train, dict), cls, "train", "a mapping of TrainConfig fields", self.train)

    # -- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ALConfig":
        return dataclass_from_dict(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ALConfig":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as err:
            raise ConfigError(f"Config file {path} does not exist: check the path.") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"Config file {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"Config file {path} must hold a mapping of ALConfig fields.")
        return cls.from_dict(data)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=True))

    def result_fields(self) -> dict[str, Any]:
        """The fields that decide what the run selects (not where or how fast it runs)."""
        return {k: v for k, v in self.to_dict().items() if k not in _EXECUTION_FIELDS}

    def fingerprint(self) -> str:
        """A short hash of :meth:`result_fields`: equal fingerprints, same experiment."""
        blob = json.dumps(self.result_fields(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def train_config(self):
        """The ``raydal.training.TrainConfig`` of this run (seeded from ``seed``)."""
        from raydal.training import TrainConfig

        kwargs = dict(self.train)
        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("warm_start", self.warm_start)
        return TrainConfig(**kwargs)
