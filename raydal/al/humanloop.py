"""Human in the loop: export the pending query batch to annotators, import their labels.

``export_batch`` writes, for the pending batch of a state dir, into one folder
(``export/<batch>/`` or ``--out``) and nowhere else, ``<batch>`` being
``raydal.al.state.batch_name``: ``iter-0000`` for the batch queried by iteration
0's model (``checkpoints/iter-0000``), ``initial`` for a random initial set:
  - ``batch.csv``: id, path of the original image, thumbnail, predicted labels,
    probabilities and an empty ``labels`` column (class names joined by ``;``);
  - ``label_studio_tasks.json`` + ``label_studio_config.xml``: a Label Studio
    project (multiple-choice classes; the model's guess not shown, shown as a
    hint or pre-selected: ``ExportOptions.predictions``), images
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

from raydal.al import labelstudio
from raydal.al.labelfiles import (
    DEFAULT_MAX_BYTES,
    LS_FROM_NAME,
    MALFORMED,
    SKIP_LABEL,
    SKIPPED,
    UNANNOTATED,
    LabelFile,
    LabelRecord,
)
from raydal.al.state import ALState, StateStore, batch_name
from raydal.al.thumbnails import DEFAULT_MAX_SIDE, Thumbnails, data_uri, png_bytes
from raydal.constants import (
    BATCH_CSV,
    ENV_LS_DOCUMENT_ROOT,
    EXPORT_DIR,
    LABEL_STUDIO_CONFIG,
    LABEL_STUDIO_TASKS,
    THUMBS_DIR,
)
from raydal.exceptions import ConfigError, LabelImportError, StateError
from raydal.faults import fault_point
from raydal.settings import Interval, check_settings, setting

#: Problems listed in one LabelImportError (the rest are counted).
MAX_PROBLEMS_SHOWN = 50


@dataclass
class ExportOptions:
    """How ``export_batch`` writes thumbnails and Label Studio tasks (``raydal export`` flags)."""

    images: str = setting(
        "inline",
        "how Label Studio tasks reference thumbnails: inline (data URIs, no server "
        "set-up) or local-files (served by Label Studio from its document root)",
        choices=labelstudio.IMAGE_MODES,
    )
    document_root: str | None = setting(
        None,
        "local-files: Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, "
        f"a parent of the export folder (default ${ENV_LS_DOCUMENT_ROOT})",
    )
    max_side: int = setting(
        DEFAULT_MAX_SIDE, "longest thumbnail side in pixels; larger originals are shrunk", Interval(int, 8)
    )
    predictions: str = setting(
        "none",
        "what Label Studio shows of the model's guess: none (the image only), hint "
        "(its class probabilities as text, nothing selected) or preselect (Label "
        "Studio predictions: the guess shown as the selected answer); "
        "docs/label-studio.md says why none is the default",
        choices=labelstudio.PREDICTION_MODES,
    )
    rgb_bands: str | None = setting(
        None,
        "the bands thumbnails show as red, green, blue: 3 names or 1-based "
        "numbers, e.g. 1,2,3 (default: the archive's, see the export's log line)",
    )

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
    name = batch_name(pending["iteration"])
    out = (Path(out_dir) if out_dir else Path(store.local_path(EXPORT_DIR, name))).resolve()
    if options.images == "local-files":
        labelstudio.local_files_url(out, Path(options.document_root))  # refuse before writing anything
    thumbs = out / THUMBS_DIR
    thumbs.mkdir(parents=True, exist_ok=True)

    ids = list(pending["ids"])
    shard = read_split(manifest, "pool", ids=ids)
    paths = _shard_paths(manifest, "pool", ids)
    thumbnails = Thumbnails(manifest, options.rgb_bands)
    originals = thumbnails.originals
    if log:
        log(thumbnails.describe())
    names = thumbnail_names(ids)
    images: dict[str, str] = {}
    for sid, small in zip(ids, shard["image"]):
        png = png_bytes(thumbnails.rgb(paths.get(sid, ""), small), options.max_side)
        target = _inside(out, thumbs / names[sid])
        target.write_bytes(png)
        images[sid] = (
            data_uri(png)
            if options.images == "inline"
            else labelstudio.local_files_url(target, Path(options.document_root))
        )
    if originals.failures and log:
        where, why = originals.failures[0]
        log(
            f"{len(originals.failures)} of {len(ids)} thumbnails were made from the "
            f"{manifest.image_size}x{manifest.image_size} shard images, not the originals: "
            f"e.g. {where or '(no path)'}: {why}"
        )

    rows, tasks = [], []
    version = f"raydal-{name}"  # the model that made the query: checkpoints/<name>
    from raydal.predict import run_threshold

    threshold = run_threshold(state.config)  # the run's --f1-threshold, as its recorded F1
    for sid in ids:
        probs = pending.get("probs", {}).get(sid)
        predicted = [c for c, p in zip(classes, probs) if p >= threshold] if probs else None
        rows.append(
            {
                "id": sid,
                "path": paths.get(sid, ""),
                "thumbnail": f"{THUMBS_DIR}/{names[sid]}",
                "predicted_labels": ";".join(predicted or []),
                "probabilities": ";".join(f"{c}:{p:.3f}" for c, p in zip(classes, probs)) if probs else "",
                "labels": "",
            }
        )
        tasks.append(
            labelstudio.task(sid, images[sid], classes, probs or None, threshold, version, options.predictions)
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "path", "thumbnail", "predicted_labels", "probabilities", "labels"])
    writer.writeheader()
    writer.writerows(rows)
    _inside(out, out / BATCH_CSV).write_text(buf.getvalue(), encoding="utf-8", newline="")
    tasks_json = json.dumps(tasks, indent=1).encode("utf-8")
    _inside(out, out / LABEL_STUDIO_TASKS).write_bytes(tasks_json)
    if len(tasks_json) > labelstudio.UPLOAD_LIMIT and log:
        log(
            f"{LABEL_STUDIO_TASKS} is {len(tasks_json) / 2**20:.0f} MiB, over Label Studio's default import "
            f"limit ({labelstudio.UPLOAD_LIMIT // 2**20} MiB): start Label Studio with a larger "
            "DATA_UPLOAD_MAX_MEMORY_SIZE (bytes), or export with --images local-files (or a smaller --max-side)."
        )
    _inside(out, out / LABEL_STUDIO_CONFIG).write_text(
        labelstudio.label_config(classes, options.predictions), encoding="utf-8"
    )
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


#: How several different answers for one image are resolved (``--on-disagreement``).
DISAGREEMENT_POLICIES = ("refuse", "majority", "latest", "prefer=ANNOTATOR")


def check_disagreement_policy(policy: str) -> str:
    """``policy`` if it is one of ``DISAGREEMENT_POLICIES`` (``prefer=`` with a name); raise otherwise."""
    if policy in DISAGREEMENT_POLICIES[:3] or (policy.startswith("prefer=") and policy[len("prefer=") :].strip()):
        return policy
    raise ConfigError(
        f"The 'on_disagreement' parameter must be one of {', '.join(DISAGREEMENT_POLICIES)} "
        f"(ANNOTATOR: a name or id as the export writes it). Got {policy!r} instead."
    )


@dataclass(frozen=True)
class _Answer:
    """One answer for an image: class indices (None: unlabelable), where, by whom, when, reason."""

    labels: tuple[int, ...] | None
    where: str
    annotator: str | None
    when: str
    order: int
    reason: str = ""

    def shown(self, classes: Sequence[str]) -> str:
        what = "unlabelable" if self.labels is None else str([classes[i] for i in self.labels])
        return f"{what} by {self.annotator or 'an unnamed annotator'} at {self.where}"


def _latest(answers: list[_Answer]) -> _Answer:
    """The answer given last: by its time where every answer has one, else by its place in the input."""
    from datetime import datetime

    try:
        return max(answers, key=lambda a: (datetime.fromisoformat(a.when).timestamp(), a.order))
    except (ValueError, TypeError):  # a time missing or not ISO 8601
        return max(answers, key=lambda a: a.order)


class LabelCheck:
    """Checks label records against a run; keeps the new labels, changes, skips and every problem.

    ``add`` checks each record on its own (id, classes); ``finish`` resolves several answers
    for one id (``on_disagreement``) and compares each answer with the state. Memory: one
    small answer per record of a known id, and the first problems; a hostile file of
    millions of bad rows costs a counter.

    allow_changes: a label imported before may change (``changed``: id -> classes,
    recorded with the earlier answer); otherwise a changed label is a problem.
    """

    def __init__(
        self,
        state: ALState,
        classes: Sequence[str],
        archive_ids: set[str],
        allow_changes: bool = False,
        on_disagreement: str = "refuse",
    ):
        self.state = state
        self.classes = list(classes)
        self.archive_ids = archive_ids
        self.allow_changes = allow_changes
        self.policy = check_disagreement_policy(on_disagreement)
        self.pending = set(state.pending["ids"]) if state.pending else set()
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.new: dict[str, list[int]] = {}
        self.changed: dict[str, list[int]] = {}
        self.skip: dict[str, str] = {}  # pending id -> why it cannot be labeled
        self.unchanged: set[str] = set()
        self.unannotated: list[str] = []
        self.skipped: list[str] = []
        self.resolved: list[str] = []  # disagreements settled by the policy, in words
        self.problems: list[tuple[str, str]] = []
        self.n_problems = 0
        self.mentioned: set[str] = set()  # pending ids the input names, answered or not
        self._answers: dict[str, list[_Answer]] = {}
        self._unannotated: dict[str, str] = {}
        self._lower_ids: dict[str, str] | None = None
        self._order = 0

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
        if rec.status == UNANNOTATED:
            self._unannotated.setdefault(sid, where)
            return None
        order, self._order = self._order, self._order + 1
        if rec.status == SKIPPED and not (rec.names and rec.names[0] in self.index):  # not a class of that name
            self._answers.setdefault(sid, []).append(_Answer(None, where, rec.annotator, rec.when, order, rec.detail))
            return None
        unknown = [n for n in rec.names if n not in self.index]
        if unknown:
            return self._problem(
                where,
                f"id {sid!r}: class name(s) {unknown} not in the project's classes"
                f"{self._class_hint(unknown)}; valid: {', '.join(self.classes)} "
                f"(or {SKIP_LABEL!r} for an image that cannot be labeled)",
            )
        if not rec.names:
            return self._problem(
                where,
                f"id {sid!r}: empty label set (annotated with no class): every image "
                "needs at least one class (from Label Studio, raydal reads the answers of "
                f'<Choices name="{LS_FROM_NAME}"> in its label_studio_config.xml)',
            )
        labels = tuple(sorted({self.index[n] for n in rec.names}))
        self._answers.setdefault(sid, []).append(_Answer(labels, where, rec.annotator, rec.when, order))
        return None

    def finish(self) -> None:
        """Resolve each id's answers and compare them with the state (call once, after the last ``add``)."""
        for sid, answers in self._answers.items():
            labeled = [a for a in answers if a.labels is not None]
            if not labeled:  # every answer says unlabelable
                self._settle_skip(sid, answers[-1])
                continue
            answer = self._resolve(sid, labeled)
            if answer is not None:
                self._settle(sid, answer)
        self.unannotated = [
            f"{where} (id {sid!r})"
            for sid, where in self._unannotated.items()
            if sid not in self._answers and sid in self.pending and sid not in self.state.labeled
        ]

    def _resolve(self, sid: str, answers: list[_Answer]) -> _Answer | None:
        """The answer ``on_disagreement`` keeps; None (and a problem) when it keeps none."""
        if len({a.labels for a in answers}) == 1:
            return answers[-1]
        policy, chosen, why = self.policy, None, ""
        if policy == "majority":
            counts: dict[tuple[int, ...], int] = {}
            for a in answers:
                counts[a.labels] = counts.get(a.labels, 0) + 1
            top = max(counts.values())
            winners = [labels for labels, n in counts.items() if n == top]
            if len(winners) == 1:
                chosen = next(a for a in reversed(answers) if a.labels == winners[0])
            else:
                why = f"no majority ({top} against {top})"
        elif policy == "latest":
            chosen = _latest(answers)
        elif policy.startswith("prefer="):
            name = policy[len("prefer=") :].strip()
            theirs = [a for a in answers if a.annotator == name]
            chosen = _latest(theirs) if theirs else None
            why = "" if theirs else f"{name} did not annotate it"
        shown = "; ".join(a.shown(self.classes) for a in answers)
        if chosen is None:
            self._problem(
                answers[-1].where,
                f"id {sid!r}: its {len(answers)} annotations disagree ({shown})"
                + (f": {policy} keeps none, {why}" if policy != "refuse" else "")
                + "; choose with --on-disagreement majority|latest|prefer=ANNOTATOR, "
                "or keep one answer and export again",
            )
            return None
        self.resolved.append(f"id {sid!r}: {policy} kept {chosen.shown(self.classes)} (of {shown})")
        return chosen

    def _settle(self, sid: str, answer: _Answer) -> None:
        """Compare an image's one answer with the state: new, unchanged, changed or a problem."""
        where, labels = answer.where, answer.labels or ()
        flag = "pass --allow-changes to record the new answer (the earlier one is kept in the state's corrections)"
        if sid in self.state.unlabelable:
            gone = self.state.unlabelable[sid]
            if self.allow_changes:
                self.changed[sid] = list(labels)
                return None
            return self._problem(
                where,
                f"id {sid!r} was marked unlabelable (iteration {gone['iteration']}, by "
                f"{gone['by']}: {gone['reason']}) and is now {self._names(labels)}: {flag}",
            )
        if sid in self.state.labeled:
            done = self.state.labeled[sid]
            known = self.state.human_labels.get(sid)
            if known is None:
                return self._problem(
                    where,
                    f"id {sid!r} is already labeled (iteration {done['iteration']}, "
                    f"by {done['by']}) from the archive's labels; correct those in the "
                    "archive's labels and prepare it again",
                )
            if tuple(sorted(known)) == labels:
                self.unchanged.add(sid)
                return None
            if self.allow_changes:
                self.changed[sid] = list(labels)
                return None
            return self._problem(
                where,
                f"id {sid!r} was imported before (iteration {done['iteration']}, by "
                f"{done['by']}) as {self._names(known)} and is now {self._names(labels)}: "
                f"labels already imported cannot change unless asked: {flag}; or restore "
                "the earlier answer",
            )
        if sid not in self.pending:
            return self._problem(where, f"id {sid!r} is not in the pending query batch")
        self.new[sid] = list(labels)
        return None

    def _settle_skip(self, sid: str, answer: _Answer) -> None:
        """An image nobody could label: out of the pool if it is pending (otherwise nothing changes)."""
        if sid in self.pending and sid not in self.state.labeled and sid not in self.state.unlabelable:
            self.skip[sid] = answer.reason
            self.skipped.append(f"{answer.where} (id {sid!r})")

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
        return (
            [
                i
                for i in self.state.pending["ids"]
                if i not in self.mentioned and i not in self.state.labeled and i not in self.skip
            ]
            if self.state.pending
            else []
        )

    def summary(self) -> str:
        return (
            f"{len(self.new)} new, {len(self.changed)} changed, {len(self.unchanged)} unchanged (imported "
            f"before), {len(self.unannotated)} not annotated yet, {len(self.skipped)} skipped"
        )

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
    check.finish()
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


def _check_for(
    state: ALState, classes: Sequence[str] | None, archive_ids: set[str] | None, **options: Any
) -> LabelCheck:
    if classes is None or archive_ids is None:
        from raydal.data.shards import load_manifest, read_ids

        manifest = load_manifest(state.config["shards_dir"])
        classes = list(manifest.classes) if classes is None else classes
        if archive_ids is None:
            archive_ids = set()
            for split in manifest.splits:
                archive_ids.update(read_ids(manifest, split).tolist())
    return LabelCheck(state, classes, archive_ids, **options)


# -- importing -------------------------------------------------------------------------


def import_labels(
    state_dir: str,
    path: str | Path,
    annotator: str = "annotator",
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_changes: bool = False,
    on_disagreement: str = "refuse",
) -> dict[str, Any]:
    """Validate a label file against the run and record what it says atomically.

    Accepts raydal's batch.csv and Label Studio's JSON, JSON_MIN and CSV exports,
    also of the whole project. A label imported before may change only with
    ``allow_changes`` (the earlier answer is kept in ``state.corrections``);
    several different answers for one image are resolved by ``on_disagreement``
    (``DISAGREEMENT_POLICIES``); a skipped task or an ``unlabelable`` answer takes
    a pending image out of the pool (``state.unlabelable``), so its batch can
    complete without it. Nothing changes unless every entry passes.

    Returns ``{"imported", "changed", "unchanged", "unannotated", "skipped", "resolved",
    "not_in_file", "remaining", "phase", "already_imported", "format"}``;
    ``skipped`` names the tasks marked unlabelable, ``unannotated`` the pending
    rows or tasks without an answer, ``not_in_file`` the pending ids the file
    does not name (both stay pending), ``resolved`` the disagreements settled.
    Importing a file already imported changes nothing.
    """
    store = StateStore(state_dir)
    with store.lock(f"raydal import-labels {state_dir} {path}"):  # no job writes meanwhile
        state = store.load()
        fault_point("import:start")
        label_file = LabelFile(path, max_bytes=max_bytes)
        check = _check_for(state, None, None, allow_changes=allow_changes, on_disagreement=on_disagreement)
        for record in label_file.records():
            check.add(record)
        check.finish()
        if label_file.sha256 in state.imports:
            return _result(state, check, label_file.format, already=True)
        check.raise_problems(str(path))
        if not (check.new or check.changed or check.skip):
            _pending(state, state_dir)
            raise LabelImportError(
                f"{path}: nothing new to import ({check.summary()}); nothing was changed. Fill in the 'labels' "
                "column (class names joined by ';'), or annotate the pending tasks in Label Studio and export again."
            )
        return _record(store, state, check, annotator, label_file.sha256, label_file.format, str(path))


def import_mapping(
    state_dir: str, mapping: Mapping[str, Sequence[str] | str], annotator: str = "api", allow_changes: bool = False
) -> dict[str, Any]:
    """``import_labels`` for an in-memory ``{id: [class names]}`` (``validate_labels`` rules)."""
    store = StateStore(state_dir)
    with store.lock(f"raydal import_mapping {state_dir}"):
        state = store.load()
        fault_point("import:start")
        if not allow_changes:
            _pending(state, state_dir)
        check = _check_for(state, None, None, allow_changes=allow_changes)
        for record in _mapping_records(mapping):
            check.add(record)
        check.finish()
        check.raise_problems("labels")
        if not (check.new or check.changed or check.skip):
            return _result(state, check, "mapping", already=False)
        return _record(store, state, check, annotator, None, "mapping", "labels given by " + annotator)


def relabel(state_dir: str, mapping: Mapping[str, Sequence[str] | str], by: str) -> dict[str, Any]:
    """Correct labels imported before (or label unlabelable images): ``raydal relabel``.

    ``mapping``: id -> class names. Each change is recorded in ``state.corrections``
    with who, when and the earlier answer; the next training uses the new labels.
    """
    return import_mapping(state_dir, mapping, annotator=by, allow_changes=True)


def skip_images(state_dir: str, ids: Sequence[str], reason: str, by: str) -> dict[str, Any]:
    """Mark pool images that cannot be labeled (cloudy, no data): ``raydal skip``.

    They leave the pool for good (never queried again, not counted as labeled), with
    ``reason`` recorded; a pending batch whose other images are labeled is complete.
    Refuses (``LabelImportError``, nothing changed) an id that is not an unlabeled pool image.
    """
    from raydal.data.shards import load_manifest, read_ids

    if not reason or not reason.strip():
        raise LabelImportError(
            "The 'reason' parameter must say why the images cannot be labeled "
            "(e.g. --reason 'cloud cover'). Got an empty reason instead."
        )
    store = StateStore(state_dir)
    with store.lock(f"raydal skip {state_dir}"):
        state = store.load()
        pool = set(read_ids(load_manifest(state.config["shards_dir"]), "pool").tolist())
        problems = []
        for sid in ids:
            if sid not in pool:
                problems.append((f"id {sid!r}", "not an image of the archive's pool"))
            elif sid in state.labeled:
                by = state.labeled[sid]["by"]
                problems.append((f"id {sid!r}", f"already labeled (by {by}); `raydal relabel` changes a label"))
        if problems:
            raise LabelImportError(f"raydal skip: nothing was changed; fix these {len(problems)} problem(s):", problems)
        new = {sid: reason.strip() for sid in dict.fromkeys(ids) if sid not in state.unlabelable}
        if new:
            state.mark_unlabelable(new, by=by)
            fault_point("import:mid")
            store.save(state)
        return {
            "skipped": list(new),
            "unchanged": len(set(ids)) - len(new),
            "remaining": len(state.pending["ids"]) if state.pending else 0,
            "phase": state.phase,
        }


def _record(
    store: StateStore, state: ALState, check: LabelCheck, annotator: str, digest: str | None, fmt: str, source: str
) -> dict[str, Any]:
    if check.new:
        state.record_labels(check.new, by=annotator)
    if check.changed:
        state.correct_labels(check.changed, by=annotator, source=source)
    if check.skip:
        state.mark_unlabelable(check.skip, by=annotator)
    if digest:
        state.imports.append(digest)
    fault_point("import:mid")  # validated and recorded, not saved
    store.save(state)
    fault_point("import:end")
    return _result(state, check, fmt, already=False, imported=len(check.new))


def _result(state: ALState, check: LabelCheck, fmt: str, already: bool, imported: int = 0) -> dict[str, Any]:
    return {
        "imported": imported,
        "changed": 0 if already else len(check.changed),
        "unchanged": len(check.unchanged),
        "unannotated": list(check.unannotated),
        "skipped": [] if already else list(check.skipped),
        "resolved": [] if already else list(check.resolved),
        "not_in_file": check.not_mentioned(),
        "remaining": len(state.pending["ids"]) if state.pending else 0,
        "phase": state.phase,
        "already_imported": already,
        "format": fmt,
    }
