"""A Python API for notebooks: ``Learner`` asks for the next batch, takes labels, predicts.

It works on the same state dir as the command line: a run started with
``raydal run`` opens here, and ``raydal export`` / ``import-labels`` /
``report`` / ``predict`` work on a Learner's state dir. See docs/api.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from raydal.al.state import ALState, StateStore
from raydal.config import ALConfig, resolve_config
from raydal.exceptions import ConfigError
from raydal.utils import normal_location

__all__ = ["LEARNER_DEFAULTS", "Learner"]

#: What a Learner changes from ``raydal run``'s defaults: annotators answer, in this process.
LEARNER_DEFAULTS = {"mode": "human", "executor": "local"}


def _check_fields(settings: Mapping[str, Any]) -> None:
    """ConfigError for a setting that is not an ``ALConfig`` field (e.g. ``trials``: a Learner is one
    run) or that the arguments give (the dataset is the shards')."""
    valid = {f.name for f in dataclasses.fields(ALConfig)} - {"dataset", "shards_dir", "state_dir"}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(
            f"Unknown Learner setting(s) {unknown}: a Learner is one run, set by ALConfig fields "
            f"{sorted(valid)} (training settings go in train={{...}})."
        )


class Learner:
    """Human-in-the-loop active learning in memory, durable in a state dir.

    Args:
        state_dir: where the run lives. An existing run is reopened with its own config
            (``settings`` may then change only execution fields: executor, workers, ...).
        shards_dir: the prepared shards (``raydal prepare``); needed for a new run.
        fork: reopen a run under changed result settings (as ``raydal run --fork``).
        log: progress sink (one line per step); ``None`` for silence.
        preset: as ``raydal run --preset`` ("demo"); the dataset's paper protocol applies
            either way.
        settings: ``ALConfig`` fields for a new run (strategy, b, m, initial_labeled,
            iterations, backbone, train={...}, ...). A new run's configuration resolves
            as ``raydal run``'s does (``raydal.config.resolve_config``): built-in defaults
            < the shards' dataset's paper protocol < ``preset`` < :data:`LEARNER_DEFAULTS`
            (``mode="human"``, ``executor="local"``) < ``settings``.
    """

    def __init__(
        self,
        state_dir: str | Path,
        shards_dir: str | Path | None = None,
        *,
        fork: bool = False,
        log: Callable[[str], None] | None = print,
        preset: str | None = None,
        **settings: Any,
    ):
        self.store = StateStore(str(state_dir))
        if self.store.has_state():
            saved = self.store.load().config
            if shards_dir is not None and normal_location(shards_dir) != normal_location(saved["shards_dir"]):
                raise ConfigError(
                    f"The run in {state_dir} uses the shards {saved['shards_dir']}, not {shards_dir}. "
                    "Fix: leave shards_dir out to reopen it, or use a new state_dir."
                )
            self.config = ALConfig.from_dict({**saved, **settings})
        else:
            if shards_dir is None:
                raise ConfigError(
                    f"{state_dir} holds no run yet: pass shards_dir (the folder written by "
                    "`raydal prepare`) to start one."
                )
            from raydal.data.shards import load_manifest

            _check_fields(settings)
            manifest = load_manifest(shards_dir)
            where = {"shards_dir": normal_location(shards_dir), "state_dir": str(state_dir)}
            self.config = resolve_config(
                manifest.dataset, preset, overrides={**LEARNER_DEFAULTS, **settings, **where}
            ).run
        self._fork = fork
        self._log = log or (lambda _: None)
        self._executor = None

    # -- what the run knows --------------------------------------------------------
    @property
    def state(self) -> ALState:
        """The run's state as saved now (re-read: the command line may have changed it)."""
        return self.store.load()

    @property
    def classes(self) -> list[str]:
        return list(self._manifest().classes)

    @property
    def pending(self) -> list[str]:
        """Ids waiting for labels ([] when none)."""
        state = self.state
        return list(state.pending["ids"]) if state.pending else []

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per trained model: n_labeled, val/test metrics, seconds, checkpoint."""
        return self.state.history

    def images(self, ids: Sequence[str]) -> np.ndarray:
        """uint8 [N, S, S, B] pool images of ``ids`` as packed in the shards (e.g. to look at)."""
        from raydal.data.shards import read_split

        return read_split(self._manifest(), "pool", ids=list(ids))["image"]

    # -- the loop -------------------------------------------------------------------
    def query(self) -> list[str]:
        """The ids of the next batch to label, training (and querying) first when needed.

        Returns the pending ids; [] when the run is done (label budget or iterations).
        """
        learner = self._learner()
        learner.run()
        state = learner.state
        return list(state.pending["ids"]) if state.pending and state.phase == "label" else []

    def teach(self, labels: Mapping[str, Sequence[str] | str], annotator: str = "annotator") -> dict[str, Any]:
        """Record annotators' labels: ``{id: class names}`` (a list, or names joined by ``;``).

        Checked like a label file given to ``raydal import-labels`` (the same code,
        ``raydal.al.humanloop.import_mapping``): unknown ids or classes, ids not pending,
        empty label sets, changed labels are all listed in one ``LabelImportError`` and
        nothing changes. Saved atomically before it returns; labels already taught
        are accepted unchanged (``unchanged``). Returns ``{"imported", "unchanged",
        "remaining", "phase", ...}``.
        """
        from raydal.al.humanloop import import_mapping

        return import_mapping(self.store.root, labels, annotator=annotator)

    def predict(self, input: str | Path | None = None, out_dir: str | Path | None = None, **options: Any):
        """Predictions of the latest model as a pandas DataFrame (id, path, split, p_<class>, predicted).

        input: prepared shards or a folder of images (default: the run's own shards);
        out_dir: where predictions.parquet / .csv and the exported model go (default
        STATE_DIR/predictions). options: ``raydal.predict.predict``'s (threshold, executor, ...);
        the executor defaults to this run's.
        """
        import pyarrow.parquet as pq

        from raydal.predict import predict

        out = Path(out_dir) if out_dir is not None else Path(self.store.local_path("predictions"))
        options.setdefault("executor", self.config.executor)
        path = predict(self.store.root, input if input is not None else self.config.shards_dir, out, **options)
        return pq.read_table(path).to_pandas()

    # -- internals --------------------------------------------------------------------
    def _manifest(self):
        from raydal.data.shards import load_manifest

        return load_manifest(self.config.shards_dir)

    def _learner(self):
        from raydal.al.loop import ActiveLearner

        if self._executor is None:
            from raydal.al.executor import executor_needs_ray, get_executor

            if executor_needs_ray(self.config.executor):
                from raydal.distributed.session import ensure_ray

                ensure_ray()
            self._executor = get_executor(self.config.executor, self.config)
        learner = ActiveLearner(self.config, self._executor, fork=self._fork, log=self._log)
        self._fork = False  # forked once: the state now carries this config
        return learner
