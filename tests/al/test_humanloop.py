"""Human in the loop: export the pending batch, import annotators' labels."""

import csv
import json
from pathlib import Path

import pytest
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
            r["predicted_labels"] == "" and all(float(p) < 0.5 for p in probs.values()))
        assert r["labels"] == ""
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert [t["data"]["raydal_id"] for t in tasks] == state.pending["ids"]
    assert all("predictions" in t for t in tasks)
    assert 'choice="multiple"' in (out / "label_studio_config.xml").read_text()
    thumb = Image.open(out / tasks[0]["data"]["image"])
    assert thumb.mode == "RGB" and thumb.size == (32, 32)


def test_import_csv_then_retrain(waiting, tmp_path):
    store = StateStore(waiting.state_dir)
    pending = store.load().pending["ids"]
    out = export_batch(waiting.state_dir)
    filled = _fill_csv(out, _truth(waiting, pending), tmp_path / "filled.csv")
    result = import_labels(waiting.state_dir, filled, annotator="alice")
    assert result == {"imported": 5, "already_imported": False, "remaining": 0, "phase": "train"}
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
        t["annotations"] = [{"was_cancelled": False, "result": [
            {"from_name": "labels", "to_name": "image", "type": "choices",
             "value": {"choices": truth[t["data"]["raydal_id"]]}}]}]
    (tmp_path / "a.json").write_text(json.dumps(tasks[:2]))
    (tmp_path / "b.json").write_text(json.dumps(tasks[2:]))
    assert import_labels(waiting.state_dir, tmp_path / "a.json")["remaining"] == 3
    assert import_labels(waiting.state_dir, tmp_path / "b.json")["phase"] == "train"
    classes = load_manifest(waiting.shards_dir).classes
    human = store.load().human_labels
    assert {sid: [classes[c] for c in human[sid]] for sid in pending} == {s: sorted(truth[s], key=classes.index) for s in pending}


BAD_EDITS = {
    "unknown id": (lambda rows: rows[:-1] + [{**rows[-1], "id": "no_such_image99"}], "unknown id 'no_such_image99'"),
    "not pending": (None, "not in the pending query batch"),
    "unknown class": (lambda rows: [{**rows[0], "labels": "airplane;spaceship"}] + rows[1:], "unknown class name(s) ['spaceship']"),
    "empty labels": (lambda rows: [{**rows[0], "labels": ""}] + rows[1:], "empty label set"),
    "duplicate": (lambda rows: rows + [rows[0]], "duplicate id"),
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
        _fill_csv(out, _truth(waiting, pending), path, lambda rows: rows + [{**rows[0], "id": done}])
        expected = "already labeled"
    elif case == "malformed":
        _fill_csv(out, _truth(waiting, pending), path)
        path.write_text(path.read_text() + "extra,row,with,too,many,fields,here\n")
        expected = "malformed row"
    elif case == "wrong columns":
        path.write_text("image,classes\nx,y\n")
        expected = "needs the columns 'id' and 'labels'"
    else:
        edit, expected = BAD_EDITS[case]
        _fill_csv(out, _truth(waiting, pending), path, edit)
    before = {p.name: p.read_bytes() for p in Path(waiting.state_dir).iterdir() if p.is_file()}
    with pytest.raises(LabelImportError, match="bad.csv") as err:
        import_labels(waiting.state_dir, path)
    assert expected in str(err.value)
    after = {p.name: p.read_bytes() for p in Path(waiting.state_dir).iterdir() if p.is_file()}
    assert after == before  # byte for byte


def test_cli_reports_import_errors(waiting, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("id,labels\nnope,airplane\n")
    assert cli(["import-labels", waiting.state_dir, str(path)]) == 2
    assert "unknown id 'nope'" in capsys.readouterr().err
