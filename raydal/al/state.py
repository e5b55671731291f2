"""The durable active-learning state: what is labeled, by whom and when, what is pending.

The state is a small JSON document (``state.json``) plus array files beside it
(pool probabilities per iteration) and checkpoint folders. Every change goes
through :meth:`StateStore.save`, which writes a new file and renames it over the
old one, so a crash at any moment leaves either the previous or the new state on
disk, never a mix, and never loses a label that was saved.

The state dir may be a local folder or a cluster storage URI (``s3://...``,
``gs://...``) handled through pyarrow's filesystems.
"""

from __future__ import annotations

import copy
import io
import json
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raydal.constants import STATE_FILE
from raydal.exceptions import StateError

STATE_VERSION = 1
PHASES = ("init", "train", "query", "label", "done")


@dataclass
class ALState:
    """Everything an active-learning run must remember between steps.

    Attributes:
        config: the run's ``ALConfig`` as a dict; ``fingerprint`` its hash.
        phase: the next step to run: ``init`` -> ``train`` -> ``query`` ->
            ``label`` -> ``train`` ... -> ``done``.
        iteration: the AL iteration tau (0 for the initial labeled set).
        labeled: id -> ``{"iteration": tau, "by": "initial"|"oracle"|"annotator"}``.
        human_labels: id -> class indices given by annotators (human mode).
        pending: the query batch awaiting labels:
            ``{"iteration": tau, "ids": [...], "probs": {id: [C floats]}}`` or None.
        history: one record per trained model: iteration, n_labeled, val/test
            metrics, seconds per phase, checkpoint folder, ids selected after it.
        pool_probs_file: the array file holding the pool probabilities of the
            last scoring pass (used by TPD as F_{tau-1}, and by reports).
        imports: sha256 digests of label files already imported.
    """

    config: dict[str, Any]
    fingerprint: str
    phase: str = "init"
    iteration: int = 0
    labeled: dict[str, dict[str, Any]] = field(default_factory=dict)
    human_labels: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    pool_probs_file: str | None = None
    imports: list[str] = field(default_factory=list)
    version: int = STATE_VERSION

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    def load_state_dict(self, data: dict[str, Any]) -> None:
        if data.get("version") != STATE_VERSION:
            raise StateError(
                f"State version {data.get('version')!r} is not supported (expected {STATE_VERSION}). "
                "Start a new state dir or use the raydal version that wrote it."
            )
        if data.get("phase") not in PHASES:
            raise StateError(f"State phase {data.get('phase')!r} is not one of {PHASES}: the state is corrupt.")
        for key, value in copy.deepcopy(data).items():
            setattr(self, key, value)

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> "ALState":
        state = cls(config={}, fingerprint="")
        state.load_state_dict(data)
        return state

    @property
    def n_labeled(self) -> int:
        return len(self.labeled)

    def record_labels(self, labels: dict[str, list[int] | None], by: str) -> None:
        """Label pending ids; when the pending batch is complete, the next phase is training.

        ``labels``: id -> class indices from an annotator, or None where the
        archive's own label is used (simulation oracle).
        """
        pending = self.pending
        if pending is None:
            raise StateError("no pending query batch to label: the state is corrupt or already labeled.")
        for sid, lab in labels.items():
            self.labeled[sid] = {"iteration": pending["iteration"], "by": by}
            if lab is not None:
                self.human_labels[sid] = sorted(int(c) for c in lab)
        remaining = [i for i in pending["ids"] if i not in self.labeled]
        if remaining:
            pending["ids"] = remaining
        else:
            self.iteration = pending["iteration"]
            self.pending = None
            self.phase = "train"

    def labeled_ids(self) -> list[str]:
        """Labeled ids in a stable order (the order they were labeled, then by id)."""
        return sorted(self.labeled, key=lambda i: (self.labeled[i]["iteration"], i))


class StateStore:
    """Reads and atomically writes a state dir, local or on cluster storage."""

    def __init__(self, root: str):
        self.root = str(root)
        self._fs, self._base = _filesystem(self.root)

    # -- paths ---------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self._base, *parts) if self.remote else _local_join(self._base, *parts)

    @property
    def remote(self) -> bool:
        return self._fs is not None

    def local_path(self, *parts: str) -> str:
        """A local filesystem path for ``parts`` (raises for remote state dirs)."""
        if self.remote:
            raise StateError(f"{self.root} is remote storage: pass a local folder (--out) for this step.")
        return self.path(*parts)

    def uri(self, *parts: str) -> str:
        """The location of ``parts`` as given by the user: a local path or a URI."""
        return self.root.rstrip("/") + "/" + "/".join(parts) if self.remote else self.path(*parts)

    def put_dir(self, local: str, *parts: str) -> str:
        """Store the local folder ``local`` at ``parts``; returns its location (URI or path)."""
        if not self.remote:
            return local
        from raydal.utils import upload_dir

        return upload_dir(local, self.uri(*parts))

    # -- primitives ----------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        if self.remote:
            import pyarrow.fs as pafs

            return self._fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound
        import os

        return os.path.exists(self.path(*parts))

    def read_bytes(self, *parts: str) -> bytes:
        if self.remote:
            with self._fs.open_input_stream(self.path(*parts)) as f:
                return f.read()
        with open(self.path(*parts), "rb") as f:
            return f.read()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write atomically: a new file renamed over the old one."""
        target = self.path(*parts)
        if self.remote:
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            self._fs.create_dir(posixpath.dirname(target), recursive=True)
            with self._fs.open_output_stream(tmp) as f:
                f.write(data)
            self._fs.move(tmp, target)
            return
        from raydal.utils import atomic_write_bytes

        atomic_write_bytes(target, data)

    # -- state ---------------------------------------------------------------
    def has_state(self) -> bool:
        return self.exists(STATE_FILE)

    def load(self) -> ALState:
        if not self.has_state():
            raise StateError(
                f"No active-learning state in {self.root} (no {STATE_FILE}). "
                "Start a run there first (python jobs/al_ucmerced.py --state-dir ...)."
            )
        raw = self.read_bytes(STATE_FILE)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            raise StateError(f"{self.path(STATE_FILE)} is not valid JSON ({err}); the state is corrupt.") from err
        return ALState.from_state_dict(data)

    def save(self, state: ALState) -> None:
        blob = json.dumps(state.state_dict(), indent=1, sort_keys=True).encode()
        self.write_bytes(blob, STATE_FILE)

    # -- arrays --------------------------------------------------------------
    def save_probs(self, name: str, ids: np.ndarray, probs: np.ndarray) -> str:
        """Store pool probabilities ``probs: [N, C]`` for ``ids: [N]``; returns the relative name."""
        buf = io.BytesIO()
        np.savez_compressed(buf, ids=np.asarray(ids).astype(str), probs=np.asarray(probs, dtype=np.float32))
        self.write_bytes(buf.getvalue(), "probs", name)
        return posixpath.join("probs", name)

    def load_probs(self, rel: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``(ids [N], probs [N, C])`` saved by :meth:`save_probs`."""
        with np.load(io.BytesIO(self.read_bytes(*rel.split("/")))) as z:
            return z["ids"], z["probs"]


def _local_join(base: str, *parts: str) -> str:
    import os

    return os.path.join(base, *parts)


def _filesystem(root: str):
    """``(None, root)`` for local paths, ``(pyarrow FileSystem, path)`` for URIs (file:// too)."""
    from raydal.utils import filesystem, is_uri

    return filesystem(root) if is_uri(root) else (None, root)
