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

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import posixpath
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raydal.constants import STATE_FILE
from raydal.exceptions import RaydalError, StateError, StateLockedError, StorageError
from raydal.utils import atomic_write_bytes

STATE_VERSION = 1
#: The state that ``state.json`` replaced: used when ``state.json`` is damaged.
PREV_FILE = "state.json.prev"
#: Held (``flock``) by the process writing the state dir; holds who that is.
LOCK_FILE = ".lock"
_LOGGER = logging.getLogger("raydal.state")
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
        unlabelable: id -> ``{"iteration", "by", "when", "reason"}``: images an annotator
            could not label (cloudy, no data). They leave the pool: never queried again,
            never trained on, not counted in ``n_labeled``.
        corrections: one record per changed label, oldest first: ``{"id", "before",
            "after", "by", "when", "source"}`` (class indices; ``before`` None when the
            image was unlabelable). ``human_labels`` holds the current answer.
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
    unlabelable: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrections: list[dict[str, Any]] = field(default_factory=list)
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
        self._settle_pending()

    def mark_unlabelable(self, reasons: dict[str, str], by: str) -> None:
        """Take pending or unlabeled pool ids out of the pool for good: ``reasons``: id -> why.

        A pending batch whose other ids are all labeled is complete (the next phase trains).
        """
        when = _now()
        for sid, reason in reasons.items():
            self.unlabelable[sid] = {
                "iteration": self.pending["iteration"] if self.pending else self.iteration,
                "by": by,
                "when": when,
                "reason": reason,
            }
        if self.pending is not None:
            self._settle_pending()

    def correct_labels(self, labels: dict[str, list[int]], by: str, source: str) -> None:
        """Change annotators' labels (or label unlabelable images), keeping the earlier answer.

        ``labels``: id -> class indices. The next training uses them (``human_labels``).
        """
        when = _now()
        for sid, lab in labels.items():
            after = sorted(int(c) for c in lab)
            before = self.human_labels.get(sid)
            if sid in self.unlabelable:
                del self.unlabelable[sid]
                self.labeled[sid] = {"iteration": self.iteration, "by": by}
            self.human_labels[sid] = after
            self.corrections.append(
                {"id": sid, "before": before, "after": after, "by": by, "when": when, "source": source}
            )

    def _settle_pending(self) -> None:
        pending = self.pending
        remaining = [i for i in pending["ids"] if i not in self.labeled and i not in self.unlabelable]
        if remaining:
            pending["ids"] = remaining
        else:
            self.iteration = pending["iteration"]
            self.pending = None
            self.phase = "train"

    def labeled_ids(self) -> list[str]:
        """Labeled ids in a stable order (the order they were labeled, then by id)."""
        return sorted(self.labeled, key=lambda i: (self.labeled[i]["iteration"], i))


def batch_name(batch_iteration: int) -> str:
    """The one name of a query batch in logs, export folders and prediction versions.

    A batch is named after the iteration whose model queried it: ``iter-0000`` is the
    batch chosen by iteration 0's model (``checkpoints/iter-0000``) and labeled for
    iteration 1. ``batch_iteration`` is ``pending["iteration"]``, the iteration those
    labels train; the initial random set (0, no model) is ``initial``.
    """
    return "initial" if batch_iteration == 0 else f"iter-{batch_iteration - 1:04d}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StateStore:
    """Reads and atomically writes a state dir, local or on cluster storage.

    Every save keeps the state it replaces as ``state.json.prev`` and stores a
    sha256 of its content inside ``state.json``: a truncated or half-copied
    ``state.json`` is detected on load, set aside as ``state.json.corrupt-<time>``
    and the previous generation used, with a warning that says what was discarded.
    :meth:`lock` keeps a second process from writing the same (local) state dir.
    """

    def __init__(self, root: str, log: Callable[[str], None] | None = None):
        self.root = str(root)
        self._fs, self._base = _filesystem(self.root)
        self.log = log or _LOGGER.warning
        self._lock_fd: int | None = None
        self._lock_depth = 0

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

        with storage_errors(f"uploading the checkpoint {local} to {self.uri(*parts)}"):
            return upload_dir(local, self.uri(*parts))

    # -- primitives ----------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        if self.remote:
            import pyarrow.fs as pafs

            with storage_errors(f"looking for {self.uri(*parts)}"):
                return self._fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound
        return os.path.exists(self.path(*parts))

    def read_bytes(self, *parts: str) -> bytes:
        if self.remote:
            with storage_errors(f"reading {self.uri(*parts)}"), self._fs.open_input_stream(self.path(*parts)) as f:
                return f.read()
        with open(self.path(*parts), "rb") as f:
            return f.read()

    def write_bytes(self, data: bytes, *parts: str, fault: str | None = None) -> None:
        """Write atomically: a new file renamed over the old one.

        Raises :class:`StorageError` when storage fails (disk full, a URI not
        answering); the old file is then unchanged. ``fault``: prefix of the fault
        points reached on the way (``save`` -> ``save:start``, ``save:mid``).
        """
        target = self.path(*parts)
        with storage_errors(f"writing {self.uri(*parts)}"):
            if self.remote:
                tmp = f"{target}.{uuid.uuid4().hex}.tmp"
                self._fs.create_dir(posixpath.dirname(target), recursive=True)
                with self._fs.open_output_stream(tmp) as f:
                    f.write(data)
                self._fs.move(tmp, target)
                return
            atomic_write_bytes(target, data, fault=fault)

    # -- state ---------------------------------------------------------------
    def has_state(self) -> bool:
        return self.exists(STATE_FILE) or self.exists(PREV_FILE)

    def load(self) -> ALState:
        """The last complete state: ``state.json``, or ``state.json.prev`` if the former is damaged."""
        if not self.has_state():
            raise StateError(
                f"No active-learning state in {self.root} (no {STATE_FILE}). "
                "Start a run there first (python jobs/al_ucmerced.py --state-dir ...)."
            )
        if self._lock_depth and not self.remote:
            self._discard_temp_files()
        problems = []
        for name in (STATE_FILE, PREV_FILE):
            try:
                state = self._read_state(name)
            except StateError as err:
                problems.append((name, err))
                continue
            if problems:
                self._recover(problems, state)
            return state
        raise StateError(
            f"No complete state in {self.root}: "
            + "; ".join(str(err) for _, err in problems)
            + ". Restore the state dir from a backup or start a new --state-dir."
        ) from problems[0][1]

    def _read_state(self, name: str) -> ALState:
        if not self.exists(name):
            raise StateError(f"{self.path(name)} is missing")
        raw = self.read_bytes(name)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StateError(
                f"{self.path(name)} is not valid JSON ({err}; {len(raw)} bytes): the state is corrupt "
                "(truncated by a crash or a partial copy)"
            ) from err
        if not isinstance(data, dict):
            raise StateError(f"{self.path(name)} holds no state object: the state is corrupt")
        checksum = data.pop("checksum", None)
        if checksum is not None and checksum != _checksum(data):
            raise StateError(f"{self.path(name)} fails its checksum ({len(raw)} bytes): the state is corrupt")
        return ALState.from_state_dict(data)

    def _recover(self, problems: list, state: ALState) -> None:
        """Set damaged state files aside (never delete them) and say what was discarded.

        Only the holder of :meth:`lock` repairs the dir; readers just use the fallback."""
        if not self._lock_depth:
            self.log(f"{'; '.join(str(e) for _, e in problems)}: reading the previous state {self.path(PREV_FILE)}")
            return
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for name, err in problems:
            kept = ""
            if self.exists(name):
                aside = f"{name}.corrupt-{stamp}"
                self.write_bytes(self.read_bytes(name), aside)
                kept = f" (kept as {aside})"
            self.log(f"{err}{kept}: discarded it")
        self.log(
            f"using the previous complete state {self.path(PREV_FILE)}: iteration {state.iteration}, "
            f"phase {state.phase}, {state.n_labeled} labeled; the work after it is redone"
        )
        self.save(state)  # state.json complete again, so the next save keeps it as .prev

    def _discard_temp_files(self) -> None:
        """Temp files of writes cut short (their data never replaced a complete file)."""
        folder = self._base
        if not os.path.isdir(folder):
            return
        for name in os.listdir(folder):
            if name.startswith(f".{STATE_FILE}.") and name.endswith(".tmp"):
                path = os.path.join(folder, name)
                self.log(f"removing {path} ({os.path.getsize(path)} bytes): a state write cut short")
                os.unlink(path)

    def save(self, state: ALState) -> None:
        """Save ``state`` atomically; the state it replaces becomes ``state.json.prev``."""
        data = state.state_dict()
        blob = json.dumps({**data, "checksum": _checksum(data)}, indent=1, sort_keys=True).encode()
        if self.exists(STATE_FILE):
            old = self.read_bytes(STATE_FILE)
            if _complete(old):  # a damaged file is never promoted to the fallback
                self.write_bytes(old, PREV_FILE)
        self.write_bytes(blob, STATE_FILE, fault="save")

    # -- exclusive access ----------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str | None = None) -> Iterator[None]:
        """Hold the state dir for this process: a second holder gets :class:`StateLockedError`.

        ``command``: what this process does (shown to the process refused). A kernel
        lock (``flock`` on ``STATE_DIR/.lock``) is released when its holder exits, even
        by SIGKILL or a power cut: a crashed run never leaves the state dir locked.
        The file is removed on release (a crashed holder's stays, with its note, until the
        next holder). Re-entrant within one store. Storage URIs (``s3://``) are not
        locked (see docs/service.md).
        """
        if self.remote or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        import fcntl

        os.makedirs(self._base, exist_ok=True)
        path = self.path(LOCK_FILE)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                who = ", ".join(f"{k} {holder[k]}" for k in ("host", "pid", "started", "command") if k in holder)
                raise StateLockedError(
                    f"The state dir {self.root} is in use by another raydal process ({who or 'holder unknown'}). "
                    "Wait for it to finish (or stop it), then run again; two processes never write one state dir.",
                    holder,
                ) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the previous holder removed that file as we locked it: lock the new one
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command or " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._lock_fd, self._lock_depth = fd, 1
        try:
            yield
        finally:
            self._lock_depth = 0
            self._lock_fd = None
            os.unlink(path)  # while locked: the state dir holds no lock file between runs
            os.close(fd)  # releases the flock

    # -- arrays --------------------------------------------------------------
    def save_probs(self, name: str, ids: np.ndarray, probs: np.ndarray) -> str:
        """Store pool probabilities ``probs: [N, C]`` for ``ids: [N]``; returns the relative name.

        Uncompressed ``.npz`` (float32 probabilities do not compress; at 10^6 rows
        ``savez_compressed`` took seconds), ids packed to one byte a character
        (``raydal.al.poolids.pack_ids``): 10^6 ids of 51 characters and 19 classes
        are ~127 MB, written in well under a second.
        """
        from raydal.al.poolids import pack_ids

        arrays = {"ids": pack_ids(ids), "probs": np.asarray(probs, dtype=np.float32)}
        if self.remote:
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            self.write_bytes(buf.getbuffer(), "probs", name)
        else:  # streamed into the temp file: no second copy of the arrays in memory
            with storage_errors(f"writing {self.uri('probs', name)}"):
                _atomic_write_with(self.path("probs", name), lambda f: np.savez(f, **arrays))
        return posixpath.join("probs", name)

    def load_probs(self, rel: str, packed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``(ids [N] str, probs [N, C] float32)`` saved by :meth:`save_probs` (older compressed files too).

        ``packed``: the ids as stored (``pack_ids`` bytes, a quarter of the memory), not decoded.
        """
        from raydal.al.poolids import unpack_ids

        parts = rel.split("/")
        source = io.BytesIO(self.read_bytes(*parts)) if self.remote else self.path(*parts)
        with storage_errors(f"reading {self.uri(*parts)}"), np.load(source, allow_pickle=False) as z:
            return (z["ids"] if packed else unpack_ids(z["ids"])), z["probs"]


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn a storage failure (disk full, a URI not answering) into :class:`StorageError`."""
    try:
        yield
    except RaydalError:  # already says what is wrong (e.g. DatasetNotFoundError, an OSError too)
        raise
    except (OSError, _arrow_error()) as err:
        raise StorageError(
            f"Storage failed while {what}: {err}. The previous state is intact; free space or restore "
            "access to the storage, then run the same command again to resume."
        ) from err


def _arrow_error() -> type:
    try:
        import pyarrow

        return pyarrow.ArrowException
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return OSError


def _atomic_write_with(path: str, write: Callable[[Any], None]) -> None:
    """Like ``raydal.utils.atomic_write_bytes``, for a writer that streams into the open temp file."""
    import tempfile

    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _checksum(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _complete(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    checksum = data.pop("checksum", None) if isinstance(data, dict) else None
    return isinstance(data, dict) and (checksum is None or checksum == _checksum(data))


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}


def _local_join(base: str, *parts: str) -> str:
    return os.path.join(base, *parts)


def _filesystem(root: str):
    """``(None, root)`` for local paths, ``(pyarrow FileSystem, path)`` for URIs (file:// too)."""
    from raydal.utils import filesystem, is_uri

    return filesystem(root) if is_uri(root) else (None, root)
