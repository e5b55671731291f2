"""Label Studio: raydal's project files, and its JSON / JSON_MIN / CSV exports imported back.

The export files are built in Label Studio 1.23's shapes (tests/al/labeling_state.py);
test_labelstudio_server.py checks the same flow against a real server.
"""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from labeling_state import ls_csv, ls_json_min, ls_tasks, make_waiting_state, state_files

from raydal.al.humanloop import ExportOptions, export_batch, import_labels
from raydal.al.labelstudio import label_config, local_files_url
from raydal.al.state import StateStore
from raydal.cli import main as cli
from raydal.exceptions import ConfigError, LabelImportError


@pytest.fixture
def run(tiny_shards, tmp_path):
    """A state waiting for 5 labels (5 imported before), its exported tasks, and a writer of exports."""
    info = make_waiting_state(tiny_shards, tmp_path / "state")
    info["tasks"] = json.loads((export_batch(info["state_dir"]) / "label_studio_tasks.json").read_text())

    def write(fmt: str, answers: dict, name: str = "export", tasks=None) -> Path:
        export = ls_tasks(tasks or info["tasks"], answers)
        path = tmp_path / f"{name}.{'csv' if fmt == 'CSV' else 'json'}"
        if fmt == "JSON":
            path.write_text(json.dumps(export))
        elif fmt == "JSON_MIN":
            path.write_text(json.dumps(ls_json_min(export)))
        else:
            path.write_text(ls_csv(export))
        return path

    info["write"] = write
    return info


def _human(run) -> dict:
    state = StateStore(run["state_dir"]).load()
    return {sid: [run["classes"][c] for c in idx] for sid, idx in state.human_labels.items()}


@pytest.mark.parametrize("fmt", ["JSON", "JSON_MIN", "CSV"])
def test_each_export_format_imports(run, fmt):
    p = run["pending"]
    answers = {p[0]: ["airplane", "sea"], p[1]: ["trees"], p[2]: "skip"}  # p[3], p[4]: not annotated
    result = import_labels(run["state_dir"], run["write"](fmt, answers))
    skipped_out = fmt == "JSON"  # a skip takes the image out of the pool; JSON_MIN and CSV leave skips out
    assert (result["imported"], result["remaining"], result["phase"]) == (2, 2 if skipped_out else 3, "label")
    assert {s: _human(run)[s] for s in p[:2]} == {p[0]: ["airplane", "sea"], p[1]: ["trees"]}
    assert [u.split("(id ")[1] for u in result["unannotated"]] == [f"{p[3]!r})", f"{p[4]!r})"]
    assert all("task " in u for u in result["unannotated"])  # named by their Label Studio task
    if fmt == "JSON":
        assert result["skipped"] == [f"export.json task 3 (id {p[2]!r})"] and result["not_in_file"] == []
    else:  # JSON_MIN and CSV leave skipped tasks out
        assert result["skipped"] == [] and result["not_in_file"] == [p[2]]


def test_whole_project_export_after_partial_import(run):
    p, truth = run["pending"], run["truth"]
    import_labels(run["state_dir"], run["write"]("JSON_MIN", {p[0]: truth[p[0]], p[1]: truth[p[1]]}, "part"))
    # The project also holds the tasks of the earlier batch, labeled as imported then.
    earlier = [{"data": {"image": "data:,", "raydal_id": sid}} for sid in run["labeled"]]
    every = {sid: truth[sid] for sid in run["labeled"] + p}
    result = import_labels(run["state_dir"], run["write"]("JSON", every, "whole", tasks=earlier + run["tasks"]))
    assert (result["imported"], result["unchanged"], result["phase"]) == (3, 7, "train")
    assert {s: _human(run)[s] for s in p} == {s: truth[s] for s in p}


@pytest.mark.parametrize("fmt", ["JSON", "JSON_MIN", "CSV"])
def test_changed_label_is_refused_naming_the_task(run, fmt):
    p, truth = run["pending"], run["truth"]
    import_labels(run["state_dir"], run["write"]("JSON", {p[0]: truth[p[0]]}, "first"))
    other = ["sand"] if truth[p[0]] != ["sand"] else ["ship"]
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError) as err:
        import_labels(run["state_dir"], run["write"](fmt, {p[0]: other, p[1]: truth[p[1]]}, "again"))
    assert "task 1" in str(err.value) and f"id {p[0]!r} was imported before" in str(err.value)
    assert f"is now {other}" in str(err.value)
    assert state_files(run["state_dir"]) == before


@pytest.mark.parametrize("fmt", ["JSON", "JSON_MIN", "CSV"])
def test_class_not_in_config_is_named_with_its_task(run, fmt):
    p = run["pending"]
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError) as err:
        import_labels(run["state_dir"], run["write"](fmt, {p[0]: ["trees"], p[1]: ["trees", "spaceship"]}))
    assert "task 2" in str(err.value) and f"id {p[1]!r}: class name(s) ['spaceship']" in str(err.value)
    assert state_files(run["state_dir"]) == before


def test_annotators_who_disagree_or_submit_nothing(run, tmp_path):
    p = run["pending"]
    agree = run["write"]("JSON", {p[0]: [["trees"], ["trees"]]}, "agree")
    assert import_labels(run["state_dir"], agree)["imported"] == 1
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError, match=r"task 2: id .*: its 2 annotations disagree"):
        import_labels(run["state_dir"], run["write"]("JSON", {p[1]: [["trees"], ["sea"]]}, "disagree"))
    with pytest.raises(LabelImportError, match="task 3: id .* empty label set"):
        import_labels(run["state_dir"], run["write"]("JSON", {p[2]: []}, "nothing"))
    assert state_files(run["state_dir"]) == before


def test_cli_names_skipped_and_unannotated_tasks(run, capsys):
    p = run["pending"]
    path = run["write"]("JSON", {p[0]: ["trees"], p[1]: "skip"})
    assert cli(["import-labels", run["state_dir"], str(path)]) == 0
    out = capsys.readouterr().out
    assert "imported 1 labels (label-studio-json)" in out
    assert f"1 skipped: marked unlabelable, out of the pool: export.json task 2 (id {p[1]!r})" in out
    assert "3 not annotated yet (still pending)" in out


def test_label_config_escapes_class_names():
    classes = ['forest "old"', "a<b", "fish & chips", "plain"]
    root = ET.fromstring(label_config(classes))
    choices = root.find("Choices")
    assert choices.get("name") == "labels" and choices.get("choice") == "multiple" and choices.get("required") == "true"
    assert [c.get("value") for c in choices] == classes


def test_local_files_urls(tmp_path, monkeypatch):
    root = tmp_path / "ls root"
    file = root / "runs" / "iter 1" / "thumbs" / "a#b-1.png"
    assert local_files_url(file, root) == "/data/local-files/?d=runs/iter%201/thumbs/a%23b-1.png"
    with pytest.raises(ConfigError, match="document_root"):
        local_files_url(tmp_path / "elsewhere.png", root)
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    with pytest.raises(ConfigError, match="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"):
        ExportOptions(images="local-files")
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(root))
    assert ExportOptions(images="local-files").document_root == str(root)
    with pytest.raises(ConfigError, match="'images' parameter"):
        ExportOptions(images="s3")


def test_export_local_files_mode(run, tmp_path):
    root = tmp_path / "document-root"
    out = export_batch(
        run["state_dir"], str(root / "batch"), ExportOptions(images="local-files", document_root=str(root))
    )
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    for task in tasks:
        rel = task["data"]["image"].removeprefix("/data/local-files/?d=")
        assert rel.startswith("batch/thumbs/") and (root / rel).is_file()
    with pytest.raises(ConfigError, match="document_root"):
        export_batch(
            run["state_dir"], str(tmp_path / "outside"), ExportOptions(images="local-files", document_root=str(root))
        )
    assert not (tmp_path / "outside").exists()


def test_cli_export_options(run, tmp_path, capsys):
    root = tmp_path / "root"
    assert (
        cli(
            [
                "export",
                run["state_dir"],
                "--out",
                str(root / "b"),
                "--images",
                "local-files",
                "--document-root",
                str(root),
                "--max-side",
                "16",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "exported the pending batch" in out
        and f"Local files source storage with the path {root / 'b' / 'thumbs'}" in out
    )
    task = json.loads((root / "b" / "label_studio_tasks.json").read_text())[0]
    assert task["data"]["image"].startswith("/data/local-files/?d=b/thumbs/")
    assert cli(["export", run["state_dir"], "--images", "local-files", "--document-root", str(root)]) == 2
    assert "must be a parent folder of the export folder" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["none", "hint", "preselect"])
def test_export_predictions_modes(run, tmp_path, mode):
    """none: the image only; hint: the probabilities as text, nothing selected; preselect: Label Studio
    predictions (what an annotator's Submit would record as is)."""
    assert cli(["export", run["state_dir"], "--out", str(tmp_path / mode), "--predictions", mode]) == 0
    tasks = json.loads((tmp_path / mode / "label_studio_tasks.json").read_text())
    config = ET.fromstring((tmp_path / mode / "label_studio_config.xml").read_text())
    probs = StateStore(run["state_dir"]).load().pending["probs"]
    texts = [t.get("value") for t in config.iter("Text")]
    assert texts == (["$raydal_hint"] if mode == "hint" else [])
    for task in tasks:
        p = probs[task["data"]["raydal_id"]]
        assert ("predictions" in task) == (mode == "preselect")
        assert ("raydal_hint" in task["data"]) == (mode == "hint")
        if mode == "hint":
            shown = [part.rsplit(" ", 1) for part in task["data"]["raydal_hint"].split(", ")]
            assert [float(v) for _, v in shown] == sorted((round(x, 2) for x in p), reverse=True)
            assert {c for c, _ in shown} == set(run["classes"])
        if mode == "preselect":
            (result,) = task["predictions"][0]["result"] or [{"value": {"choices": []}}]
            assert result["value"]["choices"] == [c for c, x in zip(run["classes"], p) if x >= 0.5]


def test_default_export_preselects_nothing(run):
    """The default protects label quality: no Label Studio prediction, no hint."""
    assert all(set(t) == {"data"} and set(t["data"]) == {"image", "raydal_id"} for t in run["tasks"])
