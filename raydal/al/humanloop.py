"""Human in the loop: export the pending query batch to annotators, import their labels.

``export_batch`` writes, for the pending batch of a state dir:
  - ``export/iter-NNNN/batch.csv``: id, path, predicted labels, probabilities
    and an empty ``labels`` column for annotators (class names joined by ``;``);
  - ``export/iter-NNNN/label_studio_tasks.json`` + ``label_studio_config.xml``:
    a Label Studio project (multi-choice classes, predictions pre-filled);
  - ``export/iter-NNNN/thumbs/<id>.png``: RGB composites of the images.

``import_labels`` reads that CSV filled in, or a Label Studio JSON export, checks
every row before changing anything, and records the labels atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from raydal.al.state import ALState, StateStore
from raydal.constants import BATCH_CSV, EXPORT_DIR, LABEL_STUDIO_CONFIG, LABEL_STUDIO_TASKS, THUMBS_DIR
from raydal.exceptions import LabelImportError, StateError

THRESHOLD = 0.5
#: Band names that make an RGB composite, in R, G, B order, per naming scheme.
_RGB_NAMES = (("R", "G", "B"), ("Red", "Green", "Blue"), ("B04", "B03", "B02"), ("red", "green", "blue"))


def _pending(state: ALState, state_dir: str) -> dict[str, Any]:
    if state.pending is None:
        raise StateError(
            f"{state_dir} has no pending query batch (phase {state.phase!r}). "
            "Run the job to train and query first; it stops when labels are needed."
        )
    return state.pending


def rgb_composite(image: np.ndarray, band_names: list[str]) -> np.ndarray:
    """uint8 [H, W, B] -> uint8 [H, W, 3] for display (contrast-stretched per band)."""
    idx = None
    for names in _RGB_NAMES:
        if all(n in band_names for n in names):
            idx = [band_names.index(n) for n in names]
            break
    if idx is None:
        idx = [0, 0, 0] if image.shape[-1] < 3 else [0, 1, 2]
    rgb = image[..., idx].astype(np.float32)
    lo = np.percentile(rgb, 1, axis=(0, 1))
    hi = np.percentile(rgb, 99, axis=(0, 1))
    rgb = (rgb - lo) / np.maximum(hi - lo, 1e-6)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def export_batch(state_dir: str, out_dir: str | None = None) -> Path:
    """Write the pending batch for annotators; returns the export folder."""
    from PIL import Image

    from raydal.data.shards import load_manifest, read_split

    store = StateStore(state_dir)
    state = store.load()
    pending = _pending(state, state_dir)
    manifest = load_manifest(state.config["shards_dir"])
    classes = list(manifest.classes)
    out = Path(out_dir) if out_dir else Path(store.local_path(EXPORT_DIR, f"iter-{pending['iteration']:04d}"))
    thumbs = out / THUMBS_DIR
    thumbs.mkdir(parents=True, exist_ok=True)

    data = read_split(manifest, "pool", ids=pending["ids"])
    paths = dict(zip(data["id"], data.get("path", [""] * len(data["id"]))))
    for sid, image in zip(data["id"], data["image"]):
        Image.fromarray(rgb_composite(image, list(manifest.band_names))).save(thumbs / f"{_safe(sid)}.png")

    rows, tasks = [], []
    for n, sid in enumerate(pending["ids"]):
        probs = pending.get("probs", {}).get(sid)
        predicted = [c for c, p in zip(classes, probs) if p >= THRESHOLD] if probs else []
        rows.append({
            "id": sid,
            "path": paths.get(sid, ""),
            "predicted_labels": ";".join(predicted),
            "probabilities": ";".join(f"{c}:{p:.3f}" for c, p in zip(classes, probs)) if probs else "",
            "labels": "",
        })
        task: dict[str, Any] = {"id": n + 1, "data": {"image": f"thumbs/{_safe(sid)}.png", "raydal_id": sid}}
        if probs:
            task["predictions"] = [{
                "model_version": f"raydal-iter-{pending['iteration'] - 1}",
                "score": float(np.mean([max(p, 1 - p) for p in probs])),
                "result": [{"from_name": "labels", "to_name": "image", "type": "choices",
                            "value": {"choices": predicted}}],
            }]
        tasks.append(task)
    with open(out / BATCH_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    (out / LABEL_STUDIO_TASKS).write_text(json.dumps(tasks, indent=1))
    choices = "\n".join(f'    <Choice value="{c}"/>' for c in classes)
    (out / LABEL_STUDIO_CONFIG).write_text(
        '<View>\n  <Image name="image" value="$image"/>\n'
        '  <Choices name="labels" toName="image" choice="multiple" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )
    return out


def _safe(sid: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in sid)


def _parse_csv(text: str, name: str) -> list[tuple[str, str, list[str]]]:
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    if "id" not in fields or "labels" not in fields:
        raise LabelImportError(
            f"{name}: a label CSV needs the columns 'id' and 'labels' (class names joined by ';'); "
            f"found {fields}. Fill in the batch.csv written by `raydal export`."
        )
    rows = []
    for n, row in enumerate(reader, start=2):  # line 1 is the header
        if None in row or any(v is None for v in row.values()):
            rows.append((f"{name} line {n}", "", ["\0malformed"]))
            continue
        labels = [c.strip() for c in (row["labels"] or "").replace(",", ";").split(";") if c.strip()]
        rows.append((f"{name} line {n}", (row["id"] or "").strip(), labels))
    return rows


def _parse_label_studio(data: Any, name: str) -> list[tuple[str, str, list[str]]]:
    if not isinstance(data, list):
        raise LabelImportError(f"{name}: a Label Studio export is a JSON list of tasks; got {type(data).__name__}.")
    rows = []
    for n, task in enumerate(data):
        where = f"{name} task #{n}"
        if not isinstance(task, dict) or "raydal_id" not in task.get("data", {}):
            rows.append((where, "", ["\0malformed"]))
            continue
        sid = str(task["data"]["raydal_id"])
        annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        if not annotations:
            rows.append((where, sid, []))
            continue
        choices: list[str] = []
        for result in annotations[-1].get("result", []):
            choices += list(result.get("value", {}).get("choices", []))
        rows.append((where, sid, choices))
    return rows


def read_label_file(path: str | Path) -> tuple[list[tuple[str, str, list[str]]], str]:
    """``([(where, id, class names)], sha256)`` from a filled CSV or a Label Studio JSON export."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise LabelImportError(f"cannot read label file {path}: {err}") from err
    digest = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8-sig", errors="replace")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise LabelImportError(f"{path}: not valid JSON ({err}). Export the Label Studio project as JSON.") from err
        return _parse_label_studio(data, path.name), digest
    return _parse_csv(text, path.name), digest


def validate_rows(rows, state: ALState, classes: list[str], archive_ids: set[str]) -> dict[str, list[int]]:
    """Check every row; return id -> class indices, or raise listing every problem."""
    pending = set(state.pending["ids"]) if state.pending else set()
    index = {c: i for i, c in enumerate(classes)}
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    out: dict[str, list[int]] = {}
    for where, sid, names in rows:
        if names == ["\0malformed"]:
            problems.append((where, "malformed row (wrong number of fields or missing raydal_id)"))
            continue
        if not sid:
            problems.append((where, "empty id"))
            continue
        if sid in seen:
            problems.append((where, f"duplicate id {sid!r} (first at {seen[sid]})"))
            continue
        seen[sid] = where
        if sid not in archive_ids:
            problems.append((where, f"unknown id {sid!r}: not an image of this archive"))
            continue
        if sid not in pending:
            if sid in state.labeled:
                problems.append((where, f"id {sid!r} is already labeled (iteration {state.labeled[sid]['iteration']})"))
            else:
                problems.append((where, f"id {sid!r} is not in the pending query batch"))
            continue
        unknown = [n for n in names if n not in index]
        if unknown:
            problems.append((where, f"unknown class name(s) {unknown}; valid: {', '.join(classes)}"))
            continue
        if not names:
            problems.append((where, "empty label set: every image needs at least one class"))
            continue
        out[sid] = sorted({index[n] for n in names})
    if problems:
        raise LabelImportError(
            f"label import rejected, nothing was changed; fix these {len(problems)} problem(s) and import again:",
            problems,
        )
    return out


def import_labels(state_dir: str, path: str | Path, annotator: str = "annotator") -> dict[str, Any]:
    """Validate a label file against the pending batch and record it atomically.

    Returns ``{"imported": n, "remaining": n, "phase": ...}``. Importing a file
    that was already imported changes nothing.
    """
    from raydal.data.shards import load_manifest, read_ids

    store = StateStore(state_dir)
    state = store.load()
    rows, digest = read_label_file(path)
    if digest in state.imports:
        return {"imported": 0, "already_imported": True, "remaining": len(state.pending["ids"]) if state.pending else 0,
                "phase": state.phase}
    _pending(state, state_dir)
    manifest = load_manifest(state.config["shards_dir"])
    archive_ids = set()
    for split in manifest.splits:
        archive_ids.update(read_ids(manifest, split))
    labels = validate_rows(rows, state, list(manifest.classes), archive_ids)
    if not labels:
        raise LabelImportError(f"{Path(path).name}: no labeled rows found; fill in the 'labels' column.")
    state.record_labels(labels, by=annotator)
    state.imports.append(digest)
    store.save(state)
    return {"imported": len(labels), "already_imported": False,
            "remaining": len(state.pending["ids"]) if state.pending else 0, "phase": state.phase}
