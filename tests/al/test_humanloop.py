"""Human in the loop: export the pending batch, import annotators' labels."""

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from labeling_state import state_files
from PIL import Image

from raydal.al.executor import LocalExecutor
from raydal.al.humanloop import export_batch, import_labels
from raydal.al.loop import ActiveLearner
from raydal.al.state import StateStore
from raydal.cli import main as cli
from raydal.data.shards import load_manifest, read_ids, read_split
from raydal.exceptions import LabelImportError


def _truth(cfg, ids):
    manifest = load_manifest(cfg.shards_dir)
    data = read_split(manifest, "pool", ids=ids)
    return {sid: [manifest.classes[c] for c in row.nonzero()[0]] for sid, row in zip(data["id"], data["labels"])}


def _fill_csv(export_dir: Path, truth: dict, out: Path, edit=None) -> Path:
    rows = list(csv.DictReader(open(export_dir / "batch.csv")))
    for row in rows:
        row["labels"] = ";".join(truth[row["id"]])
    if edit:
        rows = edit(rows)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


@pytest.fixture
def waiting(make_config):
    """A human-mode run waiting for the labels of its first query batch (with predictions)."""
    cfg = make_config(mode="human", iterations=2)
    ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    state = StateStore(cfg.state_dir).load()
    init_ids = list(state.pending["ids"])
    exp = export_batch(cfg.state_dir)
    import_labels(cfg.state_dir, _fill_csv(exp, _truth(cfg, init_ids), exp / "filled.csv"))
    ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()  # trains on them, queries, waits
    return cfg


def test_export_writes_csv_label_studio_and_thumbnails(waiting):
    state = StateStore(waiting.state_dir).load()
    assert state.phase == "label" and state.pending["iteration"] == 1
    out = export_batch(waiting.state_dir)
    rows = list(csv.DictReader(open(out / "batch.csv")))
    assert [r["id"] for r in rows] == state.pending["ids"]
    classes = load_manifest(waiting.shards_dir).classes
    for r in rows:
        probs = dict(p.split(":") for p in r["probabilities"].split(";"))
        assert list(probs) == list(classes)
        assert r["predicted_labels"].split(";") == [c for c in classes if float(probs[c]) >= 0.5] or (
            r["predicted_labels"] == "" and all(float(p) < 0.5 for p in probs.values())
        )
        assert r["labels"] == ""
        assert r["path"] and Path(r["path"]).is_file()  # the original image, on every row
        assert (out / r["thumbnail"]).is_file()
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert [t["data"]["raydal_id"] for t in tasks] == state.pending["ids"]
    assert not any("predictions" in t for t in tasks)  # --predictions none: the model's guess is not ticked
    assert 'choice="multiple"' in (out / "label_studio_config.xml").read_text()
    for task, row in zip(tasks, rows):  # images inlined: a stock Label Studio shows them as they are
        prefix = "data:image/png;base64,"
        assert task["data"]["image"].startswith(prefix)
        png = base64.b64decode(task["data"]["image"][len(prefix) :])
        assert png == (out / row["thumbnail"]).read_bytes()
        thumb = Image.open(io.BytesIO(png))
        assert thumb.mode == "RGB" and thumb.size == (32, 32)


def test_import_csv_then_retrain(waiting, tmp_path):
    store = StateStore(waiting.state_dir)
    pending = store.load().pending["ids"]
    out = export_batch(waiting.state_dir)
    filled = _fill_csv(out, _truth(waiting, pending), tmp_path / "filled.csv")
    result = import_labels(waiting.state_dir, filled, annotator="alice")
    assert result == {
        "imported": 5,
        "changed": 0,
        "unchanged": 0,
        "unannotated": [],
        "skipped": [],
        "resolved": [],
        "not_in_file": [],
        "remaining": 0,
        "phase": "train",
        "already_imported": False,
        "format": "csv",
    }
    state = store.load()
    assert all(state.labeled[i] == {"iteration": 1, "by": "alice"} for i in pending)
    before = store.read_bytes("state.json")
    again = import_labels(waiting.state_dir, filled)  # the same file twice: nothing changes
    assert again["already_imported"] and store.read_bytes("state.json") == before
    learner = ActiveLearner(waiting, LocalExecutor(waiting), log=lambda s: None)
    learner.step()  # trains on 15 labels
    assert learner.state.history[-1]["n_labeled"] == 15


def test_import_label_studio_export_in_two_parts(waiting, tmp_path):
    store = StateStore(waiting.state_dir)
    pending = store.load().pending["ids"]
    truth = _truth(waiting, pending)
    tasks = json.loads((export_batch(waiting.state_dir) / "label_studio_tasks.json").read_text())
    for t in tasks:
        t["annotations"] = [
            {
                "was_cancelled": False,
                "result": [
                    {
                        "from_name": "labels",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": truth[t["data"]["raydal_id"]]},
                    }
                ],
            }
        ]
    (tmp_path / "a.json").write_text(json.dumps(tasks[:2]))
    (tmp_path / "b.json").write_text(json.dumps(tasks[2:]))
    assert import_labels(waiting.state_dir, tmp_path / "a.json")["remaining"] == 3
    assert import_labels(waiting.state_dir, tmp_path / "b.json")["phase"] == "train"
    classes = load_manifest(waiting.shards_dir).classes
    human = store.load().human_labels
    assert {sid: [classes[c] for c in human[sid]] for sid in pending} == {
        s: sorted(truth[s], key=classes.index) for s in pending
    }


def _other(labels: str) -> str:
    """A label set different from ``labels``."""
    return "sea" if labels != "sea" else "ship"


BAD_EDITS = {
    "unknown id": (lambda rows: rows[:-1] + [{**rows[-1], "id": "no_such_image99"}], "unknown id 'no_such_image99'"),
    "not pending": (None, "not in the pending query batch"),
    "unknown class": (
        lambda rows: [{**rows[0], "labels": "airplane;spaceship"}] + rows[1:],
        "class name(s) ['spaceship'] not in the project's classes",
    ),
    "conflicting duplicate": (
        lambda rows: rows + [{**rows[0], "labels": _other(rows[0]["labels"])}],
        "annotations disagree",
    ),
}


@pytest.mark.parametrize("case", [*BAD_EDITS, "malformed", "wrong columns", "already labeled"])
def test_bad_imports_are_rejected_and_change_nothing(waiting, tmp_path, case):
    store = StateStore(waiting.state_dir)
    state = store.load()
    pending = state.pending["ids"]
    out = export_batch(waiting.state_dir)
    path = tmp_path / "bad.csv"
    if case == "not pending":
        val_id = str(read_ids(load_manifest(waiting.shards_dir), "val")[0])
        edit = lambda rows: rows[:-1] + [{**rows[-1], "id": val_id}]  # noqa: E731
        _fill_csv(out, _truth(waiting, pending), path, edit)
        expected = BAD_EDITS[case][1]
    elif case == "already labeled":
        done = next(iter(state.labeled))
        _fill_csv(
            out,
            _truth(waiting, pending),
            path,
            lambda rows: (
                rows
                + [
                    {
                        **rows[0],
                        "id": done,
                        "labels": _other(
                            ";".join(load_manifest(waiting.shards_dir).classes[c] for c in state.human_labels[done])
                        ),
                    }
                ]
            ),
        )
        expected = "was imported before"
    elif case == "malformed":
        _fill_csv(out, _truth(waiting, pending), path)
        path.write_text(path.read_text() + "extra,row,with,too,many,fields,here\n")
        expected = "malformed: 7 fields where the header has 6"
    elif case == "wrong columns":
        path.write_text("image,classes\nx,y\n")
        expected = "without the columns 'id' and 'labels'"
    else:
        edit, expected = BAD_EDITS[case]
        _fill_csv(out, _truth(waiting, pending), path, edit)
    before = state_files(waiting.state_dir)
    with pytest.raises(LabelImportError, match="bad.csv") as err:
        import_labels(waiting.state_dir, path)
    assert expected in str(err.value)
    assert state_files(waiting.state_dir) == before  # byte for byte


def test_cli_reports_import_errors(waiting, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("id,labels\nnope,airplane\n")
    assert cli(["import-labels", waiting.state_dir, str(path)]) == 2
    assert "unknown id 'nope'" in capsys.readouterr().err
