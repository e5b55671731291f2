"""Human in the loop: export the pending query batch to annotators, import their labels.

``export_batch`` writes, for the pending batch of a state dir, into one folder
(``export/iter-NNNN/`` or ``--out``) and nowhere else:
  - ``batch.csv``: id, path of the original image, thumbnail, predicted labels,
    probabilities and an empty ``labels`` column (class names joined by ``;``);
  - ``label_studio_tasks.json`` + ``label_studio_config.xml``: a Label Studio
    project (multiple-choice classes, the model's guess pre-filled), images
    inlined as data URIs or served as Label Studio local files;
  - ``thumbs/``: true-colour PNGs at native resolution (``raydal.al.thumbnails``).

``import_labels`` reads a label file (``raydal.al.labelfiles``: batch.csv or a
Label Studio JSON / JSON_MIN / CSV export), ``import_mapping`` an in-memory
``{id: [class names]}``; both check every entry with ``validate_labels`` rules
before anything changes and record the new labels atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al import labelstudio
from raydal.al.labelfiles import (
    DEFAULT_MAX_BYTES, LS_FROM_NAME, MALFORMED, SKIPPED, UNANNOTATED, LabelFile, LabelRecord,
)
from raydal.al.state import ALState, StateStore
from raydal.al.thumbnails import DEFAULT_MAX_SIDE, OriginalImages, data_uri, png_bytes, true_colour
from raydal.constants import (
    BATCH_CSV, ENV_LS_DOCUMENT_ROOT, EXPORT_DIR, LABEL_STUDIO_CONFIG, LABEL_STUDIO_TASKS, THUMBS_DIR,
)
from raydal.exceptions import ConfigError, LabelImportError, StateError
from raydal.faults import fault_point
from raydal.settings import Interval, check_settings, setting

THRESHOLD = 0.5
#: Problems listed in one LabelImportError (the rest are counted).
MAX_PROBLEMS_SHOWN = 50


@dataclass
class ExportOptions:
    """How ``export_batch`` writes thumbnails and Label Studio tasks (``raydal export`` flags)."""

    images: str = setting("inline", "how Label Studio tasks reference thumbnails: inline (data URIs, no server "
                                    "set-up) or local-files (served by Label Studio from its document root)",
                          choices=labelstudio.IMAGE_MODES)
    document_root: str | None = setting(None, "local-files: Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, "
                                              f"a parent of the export folder (default ${ENV_LS_DOCUMENT_ROOT})")
    max_side: int = setting(DEFAULT_MAX_SIDE, "longest thumbnail side in pixels; larger originals are shrunk",
                            Interval(int, 8))

    def __post_init__(self) -> None:
        check_settings(self)
        if self.images == "local-files":
            self.document_root = self.document_root or os.environ.get(ENV_LS_DOCUMENT_ROOT)
            if not self.document_root:
                raise ConfigError(
                    "The 'document_root' parameter of ExportOptions is needed for images='local-files'. "
                    f"Got None instead. Fix: pass --document-root, or set {ENV_LS_DOCUMENT_ROOT} as for Label Studio."
                )


def _pending(state: ALState, state_dir: str) -> dict[str, Any]:
    if state.pending is None:
        raise StateError(
            f"{state_dir} has no pending query batch (phase {state.phase!r}). "
            "Run the job to train and query first; it stops when labels are needed."
        )
    return state.pending


# -- export ----------------------------------------------------------------------------


def export_batch(
    state_dir: str,
    out_dir: str | None = None,
    options: ExportOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the pending batch for annotators into ``out_dir``; returns that folder.

    Every file written lies inside ``out_dir``, whatever the ids or class names hold.
    """
    from raydal.data.shards import load_manifest, read_split

    options = options or ExportOptions()
    store = StateStore(state_dir)
    state = store.load()
    pending = _pending(state, state_dir)
    manifest = load_manifest(state.config["shards_dir"])
    classes = list(manifest.classes)
    out = (Path(out_dir) if out_dir else Path(store.local_path(EXPORT_DIR, f"iter-{pending['iteration']:04d}"))).resolve()
    if options.images == "local-files":
        labelstudio.local_files_url(out, Path(options.document_root))  # refuse before writing anything
    thumbs = out / THUMBS_DIR
    thumbs.mkdir(parents=True, exist_ok=True)

    ids = list(pending["ids"])
    shard = read_split(manifest, "pool", ids=ids)
    paths = _shard_paths(manifest, "pool", ids)
    originals = OriginalImages(manifest)
    names = thumbnail_names(ids)
    images: dict[str, str] = {}
    for sid, small in zip(ids, shard["image"]):
        native = originals.load(paths.get(sid, ""))
        png = png_bytes(true_colour(native if native is not None else small, manifest.band_names), options.max_side)
        target = _inside(out, thumbs / names[sid])
        target.write_bytes(png)
        images[sid] = (data_uri(png) if options.images == "inline"
                       else labelstudio.local_files_url(target, Path(options.document_root)))
    if originals.failures and log:
        where, why = originals.failures[0]
        log(f"{len(originals.failures)} of {len(ids)} thumbnails were made from the "
            f"{manifest.image_size}x{manifest.image_size} shard images, not the originals: "
            f"e.g. {where or '(no path)'}: {why}")

    rows, tasks = [], []
    version = f"raydal-iter-{pending['iteration'] - 1}"
    for sid in ids:
        probs = pending.get("probs", {}).get(sid)
        predicted = [c for c, p in zip(classes, probs) if p >= THRESHOLD] if probs else None
        rows.append({
            "id": sid,
            "path": paths.get(sid, ""),
            "thumbnail": f"{THUMBS_DIR}/{names[sid]}",
            "predicted_labels": ";".join(predicted or []),
            "probabilities": ";".join(f"{c}:{p:.3f}" for c, p in zip(classes, probs)) if probs else "",
            "labels": "",
        })
        score = float(np.mean([max(p, 1 - p) for p in probs])) if probs else None
        tasks.append(labelstudio.task(sid, images[sid], predicted, score, version))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "path", "thumbnail", "predicted_labels", "probabilities", "labels"])
    writer.writeheader()
    writer.writerows(rows)
    _inside(out, out / BATCH_CSV).write_text(buf.getvalue(), encoding="utf-8", newline="")
    tasks_json = json.dumps(tasks, indent=1).encode("utf-8")
    _inside(out, out / LABEL_STUDIO_TASKS).write_bytes(tasks_json)
    if len(tasks_json) > labelstudio.UPLOAD_LIMIT and log:
        log(f"{LABEL_STUDIO_TASKS} is {len(tasks_json) / 2**20:.0f} MiB, over Label Studio's default import "
            f"limit ({labelstudio.UPLOAD_LIMIT // 2**20} MiB): start Label Studio with a larger "
            "DATA_UPLOAD_MAX_MEMORY_SIZE (bytes), or export with --images local-files (or a smaller --max-side).")
    _inside(out, out / LABEL_STUDIO_CONFIG).write_text(labelstudio.label_config(classes), encoding="utf-8")
    return out


def thumbnail_names(ids: Iterable[str]) -> dict[str, str]:
    """id -> a file name that is safe on every file system and unique per id.

    Characters other than letters, digits, ``._-`` become ``_``; a hash of the
    id keeps ``a/b`` and ``a_b`` apart; no name starts with a dot.
    """
    out = {}
    for sid in ids:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", sid)[:80].lstrip(".") or "image"
        out[sid] = f"{stem}-{hashlib.sha1(sid.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}.png"
    return out


def _inside(root: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``root``; raise otherwise (never write outside an export)."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise StateError(f"refusing to write {resolved}: it is outside the export folder {root}")
    return path


def _shard_paths(manifest: Any, split: str, ids: Sequence[str]) -> dict[str, str]:
    """id -> the original file's path, from the shards' ``path`` column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from raydal.utils import read_parquet

    wanted = pa.array(list(ids), pa.string())
    out: dict[str, str] = {}
    for file in manifest.split_files(split):
        table = read_parquet(file, columns=["id", "path"])
        table = table.filter(pc.is_in(table["id"], value_set=wanted))
        out.update(zip(table["id"].to_pylist(), table["path"].to_pylist()))
    return out


# -- checking labels -------------------------------------------------------------------


class LabelCheck:
    """Checks label records against a run, one at a time; keeps the new labels and every problem.

    Memory: the new labels (at most the pending batch), the ids seen, and the
    first problems; a hostile file of millions of bad rows costs a counter.
    """

    def __init__(self, state: ALState, classes: Sequence[str], archive_ids: set[str]):
        self.state = state
        self.classes = list(classes)
        self.archive_ids = archive_ids
        self.pending = set(state.pending["ids"]) if state.pending else set()
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.new: dict[str, list[int]] = {}
        self.unchanged: set[str] = set()
        self.unannotated: list[str] = []
        self.skipped: list[str] = []
        self.problems: list[tuple[str, str]] = []
        self.n_problems = 0
        self.mentioned: set[str] = set()  # pending ids the input names, answered or not
        self._seen: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._lower_ids: dict[str, str] | None = None

    def add(self, rec: LabelRecord) -> None:
        where, sid = rec.where, rec.sid
        if rec.status == MALFORMED:
            return self._problem(where, f"malformed: {rec.detail}" + (f" (id {sid!r})" if sid else ""))
        if not sid:
            return self._problem(where, "empty id")
        if sid not in self.archive_ids:
            return self._problem(where, f"unknown id {sid!r}: not an image of this archive{self._id_hint(sid)}")
        if sid in self.pending:
            self.mentioned.add(sid)
        if rec.status in (UNANNOTATED, SKIPPED):
            if sid in self.pending and sid not in self.state.labeled:
                (self.skipped if rec.status == SKIPPED else self.unannotated).append(f"{where} (id {sid!r})")
            return None
        unknown = [n for n in rec.names if n not in self.index]
        if unknown:
            return self._problem(where, f"id {sid!r}: class name(s) {unknown} not in the project's classes"
                                        f"{self._class_hint(unknown)}; valid: {', '.join(self.classes)}")
        if not rec.names:
            return self._problem(where, f"id {sid!r}: empty label set (annotated with no class): every image "
                                        "needs at least one class (from Label Studio, raydal reads the answers of "
                                        f"<Choices name=\"{LS_FROM_NAME}\"> in its label_studio_config.xml)")
        labels = tuple(sorted({self.index[n] for n in rec.names}))
        if sid in self._seen:
            first, earlier = self._seen[sid]
            if earlier != labels:
                self._problem(where, f"id {sid!r} has different classes here ({self._names(labels)}) "
                                     f"and at {first} ({self._names(earlier)}); keep one answer")
            return None
        self._seen[sid] = (where, labels)
        if sid in self.state.labeled:
            done = self.state.labeled[sid]
            known = self.state.human_labels.get(sid)
            if known is None:
                return self._problem(where, f"id {sid!r} is already labeled (iteration {done['iteration']}, "
                                            f"by {done['by']}) from the archive's labels")
            if tuple(sorted(known)) == labels:
                self.unchanged.add(sid)
                return None
            return self._problem(where, f"id {sid!r} was imported before (iteration {done['iteration']}, by "
                                        f"{done['by']}) as {self._names(known)} and is now {self._names(labels)}: "
                                        "labels already imported cannot change; restore the earlier answer")
        if sid not in self.pending:
            return self._problem(where, f"id {sid!r} is not in the pending query batch")
        self.new[sid] = list(labels)
        return None

    def raise_problems(self, source: str) -> None:
        if not self.n_problems:
            return
        problems = list(self.problems)
        if self.n_problems > len(problems):
            problems.append(("...", f"and {self.n_problems - len(problems)} more problems"))
        raise LabelImportError(
            f"{source}: label import rejected, nothing was changed; fix these {self.n_problems} problem(s) "
            "and import again:",
            problems,
        )

    def not_mentioned(self) -> list[str]:
        """Pending ids not labeled yet that the input does not name (Label Studio's JSON_MIN
        and CSV leave skipped tasks out)."""
        return [i for i in self.state.pending["ids"] if i not in self.mentioned and i not in self.state.labeled] \
            if self.state.pending else []

    def summary(self) -> str:
        return (f"{len(self.new)} new, {len(self.unchanged)} unchanged (imported before), "
                f"{len(self.unannotated)} not annotated yet, {len(self.skipped)} skipped")

    # -- helpers -------------------------------------------------------------
    def _problem(self, where: str, why: str) -> None:
        self.n_problems += 1
        if len(self.problems) < MAX_PROBLEMS_SHOWN:
            self.problems.append((where, why))

    def _names(self, labels: Iterable[int]) -> list[str]:
        return [self.classes[i] for i in labels]

    def _id_hint(self, sid: str) -> str:
        if self._lower_ids is None:
            self._lower_ids = {}
            for i in self.archive_ids:
                self._lower_ids.setdefault(i.lower(), i)
        match = self._lower_ids.get(sid.lower())
        return f" (ids are case-sensitive: did you mean {match!r}?)" if match else ""

    def _class_hint(self, unknown: list[str]) -> str:
        lower = {c.lower(): c for c in self.classes}
        hints = [lower[n.strip().lower()] for n in unknown if n.strip().lower() in lower]
        return f" (class names are case-sensitive: did you mean {hints}?)" if hints else ""


def validate_labels(
    state: ALState,
    mapping: Mapping[str, Sequence[str] | str],
    classes: Sequence[str] | None = None,
    archive_ids: set[str] | None = None,
) -> dict[str, list[int]]:
    """Check ``{id: [class names]}`` against a run like a label file; return the new labels.

    Returns id -> sorted class indices for the ids of the pending batch not
    labeled yet. Ids already imported with the same classes are accepted and
    left out; every other problem (unknown id or class, empty label set, an
    id not pending, a changed label) raises one ``LabelImportError`` listing
    them all. A value may also be a ``;``-joined string. ``classes`` and
    ``archive_ids`` default to the run's shard manifest.
    """
    check = _check_for(state, classes, archive_ids)
    for record in _mapping_records(mapping):
        check.add(record)
    check.raise_problems("labels")
    return check.new


def _mapping_records(mapping: Mapping[str, Any]) -> Iterable[LabelRecord]:
    if not isinstance(mapping, Mapping):
        raise LabelImportError(f"labels must be a mapping of image id to class names; got {type(mapping).__name__}.")
    for sid, names in mapping.items():
        where = f"labels[{sid!r}]"
        if isinstance(names, str):
            names = [n for n in names.split(";") if n.strip()]
        if not isinstance(names, (list, tuple, set)) or not all(isinstance(n, str) for n in names):
            yield LabelRecord(where, str(sid), status=MALFORMED, detail="the value must be a list of class names")
            continue
        yield LabelRecord(where, str(sid).strip(), tuple(n.strip() for n in names))


def _check_for(state: ALState, classes: Sequence[str] | None, archive_ids: set[str] | None) -> LabelCheck:
    if classes is None or archive_ids is None:
        from raydal.data.shards import load_manifest, read_ids

        manifest = load_manifest(state.config["shards_dir"])
        classes = list(manifest.classes) if classes is None else classes
        if archive_ids is None:
            archive_ids = set()
            for split in manifest.splits:
                archive_ids.update(read_ids(manifest, split).tolist())
    return LabelCheck(state, classes, archive_ids)


# -- importing -------------------------------------------------------------------------


def import_labels(
    state_dir: str,
    path: str | Path,
    annotator: str = "annotator",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Validate a label file against the run and record its new labels atomically.

    Accepts raydal's batch.csv and Label Studio's JSON, JSON_MIN and CSV exports,
    also of the whole project (labels imported before must be unchanged).
    Returns ``{"imported", "unchanged", "unannotated", "skipped", "not_in_file", "remaining",
    "phase", "already_imported", "format"}``; ``unannotated`` and ``skipped``
    name the pending rows or tasks without an answer, ``not_in_file`` the
    pending ids the file does not name (all stay pending).
    Importing a file already imported changes nothing.
    """
    store = StateStore(state_dir)
    with store.lock(f"raydal import-labels {state_dir} {path}"):  # no job writes meanwhile
        state = store.load()
        fault_point("import:start")
        label_file = LabelFile(path, max_bytes=max_bytes)
        check = _check_for(state, None, None)
        for record in label_file.records():
            check.add(record)
        if label_file.sha256 in state.imports:
            return _result(state, check, label_file.format, already=True)
        check.raise_problems(str(path))
        if not check.new:
            _pending(state, state_dir)
            raise LabelImportError(
                f"{path}: nothing new to import ({check.summary()}); nothing was changed. Fill in the 'labels' "
                "column (class names joined by ';'), or annotate the pending tasks in Label Studio and export again."
            )
        return _record(store, state, check, annotator, label_file.sha256, label_file.format)


def import_mapping(state_dir: str, mapping: Mapping[str, Sequence[str] | str], annotator: str = "api") -> dict[str, Any]:
    """``import_labels`` for an in-memory ``{id: [class names]}`` (``validate_labels`` rules)."""
    store = StateStore(state_dir)
    with store.lock(f"raydal import_mapping {state_dir}"):
        state = store.load()
        fault_point("import:start")
        _pending(state, state_dir)
        check = _check_for(state, None, None)
        for record in _mapping_records(mapping):
            check.add(record)
        check.raise_problems("labels")
        if not check.new:
            return _result(state, check, "mapping", already=False)
        return _record(store, state, check, annotator, None, "mapping")


def _record(store: StateStore, state: ALState, check: LabelCheck, annotator: str,
            digest: str | None, fmt: str) -> dict[str, Any]:
    n = len(check.new)
    state.record_labels(check.new, by=annotator)
    if digest:
        state.imports.append(digest)
    fault_point("import:mid")  # validated and recorded, not saved
    store.save(state)
    fault_point("import:end")
    return _result(state, check, fmt, already=False, imported=n)


def _result(state: ALState, check: LabelCheck, fmt: str, already: bool, imported: int = 0) -> dict[str, Any]:
    return {
        "imported": imported,
        "unchanged": len(check.unchanged),
        "unannotated": list(check.unannotated),
        "skipped": list(check.skipped),
        "not_in_file": check.not_mentioned(),
        "remaining": len(state.pending["ids"]) if state.pending else 0,
        "phase": state.phase,
        "already_imported": already,
        "format": fmt,
    }
