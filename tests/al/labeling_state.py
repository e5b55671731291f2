"""A human-mode state dir waiting for labels, written directly (no training), and
Label Studio export files in the shapes Label Studio 1.23 writes them.

The shapes follow Label Studio's exporter (label_studio_sdk.converter: JSON is
the task list as stored; JSON_MIN one object per non-cancelled annotation with
the task's data keys at the top and ``prettify_result`` values, a single choice
as a string, several as ``{"choices": [...]}``; CSV the JSON_MIN fields as
sorted columns, non-string values as JSON text, QUOTE_NONNUMERIC), and were
checked against a real server by tests/al/test_labelstudio_server.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from raydal.al.state import ALState, StateStore
from raydal.data.shards import load_manifest, read_ids, read_split


def make_waiting_state(shards_dir: Path, state_dir: Path, n_labeled: int = 5, n_pending: int = 5) -> dict:
    """A state in phase 'label': ``n_labeled`` pool ids imported at iteration 0, ``n_pending`` pending.

    Returns ``{"state_dir", "classes", "labeled", "pending", "truth"}``; truth maps
    every pool id to its archive class names.
    """
    manifest = load_manifest(shards_dir)
    classes = list(manifest.classes)
    pool = [str(i) for i in read_ids(manifest, "pool")]
    data = read_split(manifest, "pool")
    truth = {sid: [classes[c] for c in np.flatnonzero(row)] for sid, row in zip(data["id"], data["labels"])}
    labeled, pending = pool[:n_labeled], pool[n_labeled : n_labeled + n_pending]
    gen = np.random.default_rng(0)
    state = ALState(
        config={"shards_dir": str(shards_dir), "mode": "human"},
        fingerprint="test",
        phase="label",
        iteration=0,
        labeled={sid: {"iteration": 0, "by": "alice"} for sid in labeled},
        human_labels={sid: sorted(classes.index(c) for c in truth[sid]) for sid in labeled},
        pending={
            "iteration": 1,
            "ids": list(pending),
            "probs": {sid: gen.random(len(classes)).round(3).tolist() for sid in pending},
        },
    )
    StateStore(str(state_dir)).save(state)
    return {"state_dir": str(state_dir), "classes": classes, "labeled": labeled, "pending": pending, "truth": truth}


def state_files(state_dir: str | Path) -> dict[str, bytes]:
    """Every file under the state dir, by relative path (to check 'byte for byte unchanged')."""
    root = Path(state_dir)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- Label Studio exports ------------------------------------------------------------------


def ls_tasks(tasks: list[dict], answers: dict[str, list[str] | str | None], first_id: int = 1) -> list[dict]:
    """Label Studio's JSON export of ``tasks`` (raydal's label_studio_tasks.json) as annotated.

    answers: raydal id -> class names (one annotation), ``"skip"`` (a cancelled
    annotation), a list of lists (several annotators) or None / absent (no annotation).
    """
    out = []
    for n, t in enumerate(tasks):
        tid = first_id + n
        sid = t["data"]["raydal_id"]
        answer = answers.get(sid)
        annotations = []
        if answer == "skip":
            annotations.append(_annotation(tid, 100 + tid, [], cancelled=True))
        elif answer is not None:
            per_annotator = answer if answer and isinstance(answer[0], list) else [answer]
            for k, names in enumerate(per_annotator):
                annotations.append(_annotation(tid, 100 * (k + 1) + tid, names, cancelled=False))
        out.append(
            {
                "id": tid,
                "annotations": annotations,
                "file_upload": "label_studio_tasks.json" if n else None,
                "drafts": [],
                "predictions": [p.get("id", 0) for p in t.get("predictions", [])],
                "data": dict(t["data"]),
                "meta": {},
                "allow_skip": True,
                "created_at": "2026-11-27T23:50:00.000000Z",
                "updated_at": "2026-11-27T23:55:00.000000Z",
                "inner_id": tid,
                "total_annotations": sum(not a["was_cancelled"] for a in annotations),
                "cancelled_annotations": sum(a["was_cancelled"] for a in annotations),
                "total_predictions": len(t.get("predictions", [])),
                "comment_count": 0,
                "unresolved_comment_count": 0,
                "last_comment_updated_at": None,
                "project": 1,
                "updated_by": None,
                "comment_authors": [],
            }
        )
    return out


def _annotation(task_id: int, ann_id: int, names: list[str], cancelled: bool) -> dict:
    result = (
        []
        if cancelled
        else [
            {
                "value": {"choices": list(names)},
                "id": f"r{ann_id}",
                "from_name": "labels",
                "to_name": "image",
                "type": "choices",
                "origin": "manual",
            }
        ]
    )
    return {
        "id": ann_id,
        "completed_by": 1,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": "2026-11-27T23:55:00.000000Z",
        "updated_at": "2026-11-27T23:55:00.000000Z",
        "draft_created_at": None,
        "lead_time": 4.2,
        "prediction": {"id": task_id, "result": [], "model_version": "raydal-iter-0", "task": task_id, "project": 1},
        "result_count": len(result),
        "unique_id": f"u-{ann_id}",
        "import_id": None,
        "last_action": None,
        "bulk_created": False,
        "task": task_id,
        "project": 1,
        "updated_by": 1,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def _prettify(names: list[str]):
    """label_studio_sdk.converter.utils.prettify_result for one Choices result."""
    return names[0] if len(names) == 1 else {"choices": list(names)}


def ls_json_min(json_export: list[dict]) -> list[dict]:
    """JSON_MIN from a JSON export (Converter.convert_to_json_min)."""
    out = []
    for task in json_export:
        done = [a for a in task["annotations"] if not a["was_cancelled"]]
        if not task["annotations"]:
            out.append(
                {
                    **task["data"],
                    "id": task["id"],
                    "annotator": None,
                    "annotation_id": None,
                    "created_at": None,
                    "updated_at": None,
                    "lead_time": None,
                }
            )
        for a in done:
            record = {**task["data"], "id": task["id"]}
            choices = [c for r in a["result"] for c in r["value"]["choices"]]
            if a["result"]:
                record["labels"] = _prettify(choices)
            record.update(
                annotator=a["completed_by"],
                annotation_id=a["id"],
                created_at=a["created_at"],
                updated_at=a["updated_at"],
                lead_time=a["lead_time"],
            )
            out.append(record)
    return out


def ls_csv(json_export: list[dict]) -> str:
    """CSV from a JSON export (label_studio_sdk.converter.exports.csv2)."""
    records = []
    for r in ls_json_min(json_export):
        r = dict(r)
        if isinstance(r.get("labels"), dict):
            r["labels"] = json.dumps(r["labels"], ensure_ascii=False)
        records.append(r)
    keys = sorted(
        {k for r in records for k in r} | {"annotator", "annotation_id", "created_at", "updated_at", "lead_time"}
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()
