"""The active-learning loop as a resumable state machine (no Ray here).

Each call of :meth:`ActiveLearner.step` runs one phase and saves the state:

``init``  pick the initial labeled set at random (seeded) from the pool;
``train`` train F_tau on the labeled set, evaluate it on val and test;
``query`` score the unlabeled pool and select b samples (strategy + diversity);
``label`` the oracle labels them (simulation), or the run waits for
          ``raydal import-labels`` (human in the loop);
``done``  the label budget or iteration count is reached.

Randomness in every phase is derived from ``(seed, iteration, phase)``, so a run
that is killed and restarted on its state dir repeats the interrupted phase with
the same seed and ends with the same labeled set as an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Callable

import numpy as np

from raydal.al import stopping
from raydal.al.executor import Executor
from raydal.al.poolids import member_mask, pack_ids, positions, unpack_ids
from raydal.al.state import ALState, StateStore, batch_name, storage_errors
from raydal.config import ALConfig
from raydal.constants import CHECKPOINT_SUBDIR, CHECKPOINTS_DIR, POOL_SCORES_FILE
from raydal.exceptions import StateError
from raydal.faults import fault_point

Log = Callable[[str], None]


def phase_seed(seed: int, iteration: int, phase: str) -> int:
    """A stable per-phase seed: same run, same phase -> same randomness."""
    offsets = {"init": 0, "train": 1, "query": 2}
    return (seed * 1_000_003 + iteration * 101 + offsets[phase]) % (2**31 - 1)


class ActiveLearner:
    """Runs one active-learning trial on a state dir.

    Args:
        config: the run's config; its ``state_dir`` holds the state.
        executor: where training and scoring run (in process or on Ray).
        fork: allow opening a state dir written with a different config.
        log: progress sink (one line per step).
    """

    def __init__(self, config: ALConfig, executor: Executor, fork: bool = False, log: Log = print):
        self.config = config
        self.executor = executor
        self.log = log
        self.store = StateStore(config.state_dir, log=log)
        #: (file, (ids, probs)) of the last scoring pass, kept between the train and query steps.
        self._prev: tuple[str, tuple[np.ndarray, np.ndarray]] | None = None
        executor.log = log
        with self.store.lock():  # held while this learner writes: open, step, run
            self.state = self._open(fork)
            if self.state.phase == "done" and not self._finished():
                # more --iterations or a larger --label-budget than the finished run had: go on
                self.log(f"extending {config.state_dir} beyond iteration {self.state.iteration}")
                self.state.phase = "query"
                self.store.save(self.state)

    # -- opening -------------------------------------------------------------
    def _open(self, fork: bool) -> ALState:
        cfg = self.config
        if self.store.has_state():
            state = self.store.load()
            if state.fingerprint != cfg.fingerprint():
                diff = cfg.changed_result_settings(state.config)
                if not diff:
                    # same result settings: the state was written by a raydal whose fingerprint
                    # covered other fields (settings added or reclassified since)
                    self.log(
                        f"{cfg.state_dir}: written by an earlier raydal with the same result settings; "
                        "its fingerprint is updated"
                    )
                    state.fingerprint = cfg.fingerprint()
                elif not fork:
                    raise StateError(
                        f"The state dir {cfg.state_dir} belongs to a run with another config "
                        f"(differs in {diff}). Use a new --state-dir, or pass --fork to continue "
                        "this state under the new config."
                    )
                if diff:
                    self.log(f"forking state in {cfg.state_dir} under a new config (changed: {diff})")
                state.config = cfg.to_dict()
                state.fingerprint = cfg.fingerprint()
                self.store.save(state)
            elif state.phase != "done":
                self.log(
                    f"resuming {cfg.state_dir}: iteration {state.iteration}, phase {state.phase}, "
                    f"{state.n_labeled} labeled"
                )
            state.config = cfg.to_dict()  # execution fields may change between resumes
            return state
        state = ALState(config=cfg.to_dict(), fingerprint=cfg.fingerprint())
        self.store.save(state)
        return state

    # -- driving -------------------------------------------------------------
    @property
    def waiting_for_labels(self) -> bool:
        return self.state.phase == "label" and self.config.mode == "human"

    def step(self) -> bool:
        """Run the next phase; False when done or waiting for human labels."""
        with self.store.lock():
            self.state = self.store.load()  # what another process (import-labels) may have saved
            self.state.config = self.config.to_dict()
            if self.state.phase == "done" or self.waiting_for_labels:
                self.executor.release()  # nothing to train until the next run or the labels
                return False
            getattr(self, f"_{self.state.phase}")()
        return True

    def run(self) -> ALState:
        """Step until done (simulation) or until labels are needed (human mode)."""
        with self.store.lock():
            try:
                while self.step():
                    pass
            finally:
                self.executor.release()
        if self.waiting_for_labels:
            self.log(
                f"waiting for labels of {len(self.state.pending['ids'])} samples: "
                f"raydal export {self.config.state_dir} ; then raydal import-labels {self.config.state_dir} FILE"
            )
        return self.state

    # -- phases --------------------------------------------------------------
    def _init(self) -> None:
        """The initial labeled set: ``initial_labeled`` seeded random pool images.

        On an archive whose pool holds images without labels (a ``folder``
        archive with a partial labels CSV), simulation is refused (nothing could
        answer for those images); in human mode the pool images that already
        have labels are the initial set (``by: "archive"``), topped up to
        ``initial_labeled`` by random unlabeled images sent to annotators.
        """
        from raydal.data.shards import read_ids

        fault_point("init:start")
        cfg, state = self.config, self.state
        pool = self.executor.pool_index()  # [N] sorted, packed ids
        unlabeled = np.unique(read_ids(self.executor.manifest, "pool", labeled=False))
        if cfg.mode == "simulation" and len(unlabeled):
            raise StateError(
                f"Simulation mode needs archive labels for every pool image, but {len(unlabeled)} of the "
                f"{len(pool)} pool images of {cfg.shards_dir} have none. Fix: run with --mode human "
                "(annotators label the queried images), or give every image a label row and prepare again."
            )
        known = unpack_ids(pool[~member_mask(pool, unlabeled)]).tolist() if len(unlabeled) else []
        candidates = pack_ids(unlabeled) if len(unlabeled) else pool
        n_new = max(0, cfg.initial_labeled - len(known))
        if n_new > len(candidates):
            raise StateError(
                f"initial_labeled={cfg.initial_labeled} exceeds the pool's {len(pool)} samples: "
                "lower --initial-labeled or prepare a bigger archive."
            )
        rng = np.random.default_rng(phase_seed(cfg.seed, 0, "init"))
        chosen = sorted(unpack_ids(rng.choice(candidates, size=n_new, replace=False)).tolist())
        state.pending = {"iteration": 0, "ids": known + chosen, "probs": {}}
        state.phase = "label"
        if known:
            state.record_labels({i: None for i in known}, by="archive")
        self.store.save(state)
        if known:
            self.log(
                f"initial labeled set: the {len(known)} pool images labeled in the archive"
                + (f" + {len(chosen)} random unlabeled ones for annotators (seed {cfg.seed})" if chosen else "")
            )
        else:
            self.log(f"initial labeled set: {len(chosen)} random pool samples (seed {cfg.seed})")
        if cfg.mode == "simulation":
            self._label()

    def _train(self) -> None:
        fault_point("train:start")
        cfg, state = self.config, self.state
        tau = state.iteration
        prev = state.history[-1]["checkpoint"] if state.history else None
        init = prev if (cfg.warm_start and prev) else None
        if not self._finished():  # a query on this model follows: the executor may score in the same pass
            b, prev_probs = self._query_inputs(self._labeled_mask())
            self.executor.plan_query(labeled_ids=self._excluded_ids(), b=b, prev_probs=prev_probs)
            del prev_probs
        t0 = time.perf_counter()
        name = (CHECKPOINTS_DIR, f"iter-{tau:04d}")
        ckpt_dir = tempfile.mkdtemp(prefix="raydal-ckpt-") if self.store.remote else self.store.local_path(*name)
        with storage_errors(f"training iteration {tau} (its checkpoint goes to {ckpt_dir})"):
            checkpoint = self.executor.train(
                labeled_ids=state.labeled_ids(),
                label_overrides={k: v for k, v in state.human_labels.items()},
                out_dir=ckpt_dir,
                init_checkpoint=init,
                seed=phase_seed(cfg.seed, tau, "train"),
            )
        if self.store.remote:  # cluster storage: upload, then every node reads it from there
            local = checkpoint
            checkpoint = self.store.put_dir(local, *name, CHECKPOINT_SUBDIR)
            scores = os.path.join(ckpt_dir, POOL_SCORES_FILE)  # the pool scores of this training, if any:
            if os.path.isfile(scores):  # a resume between train and query needs them
                with open(scores, "rb") as f:
                    self.store.write_bytes(f.read(), *name, POOL_SCORES_FILE)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            self.executor.checkpoint_stored(local, checkpoint)
        t_train = time.perf_counter() - t0
        fault_point("train:end")
        t0 = time.perf_counter()
        metrics = {}
        for split in ("val", "test"):
            metrics[split] = self.executor.evaluate(checkpoint, split)
            fault_point(f"evaluate:{split}")
        t_eval = time.perf_counter() - t0
        record = {
            "iteration": tau,
            "n_labeled": state.n_labeled,
            "checkpoint": checkpoint,
            "val": metrics["val"],
            "test": metrics["test"],
            "seconds": {"train": round(t_train, 3), "eval": round(t_eval, 3)},
        }
        state.history = [h for h in state.history if h["iteration"] != tau] + [record]
        state.phase = "done" if self._finished() else "query"
        self.store.save(state)
        test = metrics["test"]
        scores = (
            f"test micro-F1 {test['micro_f1']:.4f} macro-F1 {test['macro_f1']:.4f} (present classes "
            f"{test.get('macro_f1_present', float('nan')):.4f})"
            if test.get("n_samples", 1)
            else "no labeled test split: no test scores"
        )
        self.log(f"iter {tau}: {state.n_labeled} labeled | {scores} | train {t_train:.1f}s eval {t_eval:.1f}s")

    def _finished(self) -> bool:
        cfg, state = self.config, self.state
        if cfg.iterations is not None and state.iteration >= cfg.iterations:
            return True
        if cfg.label_budget is not None and state.n_labeled >= cfg.label_budget:
            return True
        if cfg.stop_when == "stable" and stopping.is_stable(stopping.kappas(state.history)):
            return True
        return state.n_labeled + len(state.unlabelable) >= len(self.executor.pool_index())

    def _excluded_ids(self) -> list[str]:
        """The pool ids a query never returns: labeled, then unlabelable (skipped by annotators)."""
        return self.state.labeled_ids() + sorted(self.state.unlabelable)

    def _labeled_mask(self) -> np.ndarray:
        """bool [N] over the sorted pool ids: the rows out of the query (labeled or unlabelable;
        found by binary search, not by sets)."""
        return member_mask(self.executor.pool_index(), [*self.state.labeled, *self.state.unlabelable])

    def _query_inputs(self, labeled: np.ndarray) -> tuple[int, Any]:
        """(b, previous pool probabilities or None) of the next query; ``labeled``: ``_labeled_mask()``."""
        cfg, state = self.config, self.state
        b = min(cfg.b, len(labeled) - int(np.count_nonzero(labeled)))
        if cfg.label_budget is not None:
            b = min(b, cfg.label_budget - state.n_labeled)
        return b, self._prev_probs()

    def _prev_probs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The last scoring pass's ``(ids, probs)``, read once per file (train and query both pass it on).

        The ids stay packed (``pack_ids``: a quarter of str's memory at 10^6 ids); every
        consumer of ``prev_probs`` (``PrevProbs``) reads them as they are."""
        rel = self.state.pool_probs_file
        if rel is None:
            return None
        if self._prev is None or self._prev[0] != rel:
            self._prev = None  # free the old arrays before reading the new ones
            self._prev = (rel, self.store.load_probs(rel, packed=True))
        return self._prev[1]

    def _query(self) -> None:
        fault_point("score:start")
        cfg, state = self.config, self.state
        tau = state.iteration
        record = state.history[-1]
        labeled = self._labeled_mask()
        b, prev = self._query_inputs(labeled)
        pool = self.executor.pool_index()
        # The unlabeled ids only for a strategy that draws at random now; one that ranks by an
        # uncertainty reads the scores (their ids are the unlabeled pool): no copy of 10^6 ids.
        draws = self.executor.strategy.ranks_by(prev is not None) is None
        t0 = time.perf_counter()
        result = self.executor.query(
            checkpoint=record["checkpoint"],
            unlabeled_ids=unpack_ids(pool[~labeled]) if draws else None,
            labeled_ids=self._excluded_ids(),
            b=b,
            prev_probs=prev,
            seed=phase_seed(cfg.seed, tau, "query"),
        )
        fault_point("select:end")
        self._record_agreement(record, prev, result)
        self._record_diagnostics(record, result)
        del prev
        selected = list(result.selected)
        rows = positions(pool, selected)
        outside = int(np.count_nonzero((rows < 0) | labeled[rows]))
        distinct = len(np.unique(rows))
        if len(selected) != b or distinct != b or outside:
            raise StateError(
                f"the {cfg.strategy} query returned {len(selected)} ids ({distinct} distinct, "
                f"{outside} not unlabeled pool ids), expected {b}: this is a bug."
            )
        if result.pool_ids is not None:
            state.pool_probs_file = self.store.save_probs(f"iter-{tau:04d}.npz", result.pool_ids, result.pool_probs)
        record["seconds"].update({"score": round(result.score_seconds, 3), "select": round(result.select_seconds, 3)})
        record["query_seconds"] = round(time.perf_counter() - t0, 3)
        if self._finished():  # --stop-when stable, and this model's predictions completed a stable window
            state.phase = "done"  # its selection is dropped: nobody labels another batch
            self.store.save(state)
            self.log(f"iter {tau}: stopping: {stopping.advice(state.history, cfg.stop_when)['text']}")
            return
        record["selected"] = selected
        state.pending = {"iteration": tau + 1, "ids": selected, "probs": result.selected_probs}
        state.phase = "label"
        self.store.save(state)
        self.log(
            f"iter {tau}: selected {b} with {cfg.strategy} as batch {batch_name(tau + 1)} | score {result.score_seconds:.1f}s "
            f"select {result.select_seconds:.1f}s"
        )
        if cfg.mode == "human":
            self.log(f"iter {tau}: when to stop: {stopping.advice(state.history, cfg.stop_when)['text']}")
        if cfg.mode == "simulation":
            self._label()

    def _record_agreement(self, record: dict[str, Any], prev: tuple[np.ndarray, np.ndarray] | None, result) -> None:
        """Cohen's kappa of this model's and the previous scored model's predictions on the stop set
        (``raydal.al.stopping``), kept in the history ``record``; nothing when either pass is missing."""
        if (
            result.pool_ids is None
            or prev is None
            or self.state.pool_probs_file.endswith(f"iter-{record['iteration']:04d}.npz")
        ):
            return  # a strategy that scores nothing, the first scored model, or this model scored again
        stop_ids = stopping.stop_set(self.executor.pool_index(), self.config.seed)
        kappa, n = stopping.stop_set_kappa(
            prev, (result.pool_ids, result.pool_probs), stop_ids, self.config.train_config().threshold
        )
        record[stopping.HISTORY_KEY] = {"kappa": None if n == 0 else round(kappa, 6), "n": n}

    def _record_diagnostics(self, record: dict[str, Any], result) -> None:
        """The query's diagnostics (``raydal.query.diagnostics``: rank correlations of the uncertainty
        with ||h|| and with the number of predicted labels, the picked batch's predicted labels against
        the pool's), kept in the history ``record``; nothing for a strategy that scores nothing."""
        if result.pool_ids is None:
            return
        from raydal.query.diagnostics import HISTORY_KEY, query_diagnostics

        record[HISTORY_KEY] = query_diagnostics(
            result.pool_probs,
            positions(result.pool_ids, result.selected),
            self.config.train_config().threshold,
            uncertainty=result.pool_uncertainty,
            uncertainty_name=result.uncertainty_name,
            feature_norm=result.pool_feature_norm,
        )

    def _label(self) -> None:
        """Simulation: the archive's known labels answer the pending batch."""
        fault_point("label:start")
        state = self.state
        pending = state.pending
        if pending is None:
            raise StateError("phase 'label' without a pending batch: the state is corrupt.")
        by = "initial" if pending["iteration"] == 0 else "oracle"
        state.record_labels({i: None for i in pending["ids"]}, by=by)
        self.store.save(state)

    def summary(self) -> dict[str, Any]:
        """Per-iteration labeled counts and test F1 (what the job prints at the end)."""
        return {
            "state_dir": self.config.state_dir,
            "strategy": self.config.strategy,
            "phase": self.state.phase,
            "curve": [
                {"n_labeled": h["n_labeled"], "micro_f1": h["test"]["micro_f1"], "macro_f1": h["test"]["macro_f1"]}
                for h in self.state.history
            ],
        }
