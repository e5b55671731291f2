"""A team's loop: corrected labels (with history), disagreements, unlabelable images, one numbering.

Label files are Label Studio 1.23 exports built by tests/al/labeling_state.py and go
through the real import path (``import_labels`` / the CLI); refusals leave every
state file byte for byte as it was.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from labeling_state import ls_csv, ls_json_min, ls_tasks, make_waiting_state, state_files

from raydal.al.executor import LocalExecutor
from raydal.al.humanloop import ExportOptions, export_batch, import_labels, relabel, skip_images
from raydal.al.loop import ActiveLearner
from raydal.al.state import ALState, StateStore, batch_name
from raydal.cli import main as cli
from raydal.config import ExperimentConfig
from raydal.data.shards import load_manifest, prepare, read_ids
from raydal.data.synth import synthesize
from raydal.exceptions import ConfigError, LabelImportError

FORMATS = ["JSON", "JSON_MIN", "CSV"]


@pytest.fixture
def run(tiny_shards, tmp_path):
    """A state waiting for 5 labels (5 imported before) and a writer of Label Studio exports.

    ``write(fmt, answers, name, who=None)``: who maps an id to one (annotator, time) per
    annotation, in the order of its answers."""
    info = make_waiting_state(tiny_shards, tmp_path / "state")
    info["tasks"] = json.loads((export_batch(info["state_dir"]) / "label_studio_tasks.json").read_text())

    def write(fmt: str, answers: dict, name: str = "export", who: dict | None = None, tasks=None) -> Path:
        export = ls_tasks(tasks or info["tasks"], answers)
        for task in export:
            for annotation, (annotator, when) in zip(
                task["annotations"], (who or {}).get(task["data"]["raydal_id"], [])
            ):
                annotation.update(completed_by=annotator, updated_at=when, created_at=when)
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


def _state(run) -> ALState:
    return StateStore(run["state_dir"]).load()


def _names(run, sid: str) -> list[str]:
    return [run["classes"][c] for c in _state(run).human_labels[sid]]


def _other(truth: list[str]) -> list[str]:
    return ["sand"] if truth != ["sand"] else ["ship"]


# -- corrections ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_changed_label_is_refused_naming_the_flag(run, fmt):
    p, truth = run["pending"], run["truth"]
    import_labels(run["state_dir"], run["write"]("JSON", {p[0]: truth[p[0]]}, "first"))
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError) as err:
        import_labels(run["state_dir"], run["write"](fmt, {p[0]: _other(truth[p[0]]), p[1]: truth[p[1]]}, "fix"))
    assert f"id {p[0]!r} was imported before" in str(err.value) and "--allow-changes" in str(err.value)
    assert state_files(run["state_dir"]) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_reviewers_fix_in_a_whole_project_export_is_imported_with_history(run, fmt):
    """The issue's case: an imported task corrected in Label Studio, new labels in the same export."""
    p, truth, done = run["pending"], run["truth"], run["labeled"]
    earlier = [{"data": {"image": "data:,", "raydal_id": sid}} for sid in done]
    fixed = _other(truth[done[0]])
    every = {**{sid: truth[sid] for sid in done + p}, done[0]: fixed}
    path = run["write"](fmt, every, "whole", tasks=earlier + run["tasks"])
    result = import_labels(run["state_dir"], path, annotator="reviewer", allow_changes=True)
    assert (result["imported"], result["changed"], result["unchanged"], result["phase"]) == (5, 1, 4, "train")
    state = _state(run)
    assert _names(run, done[0]) == fixed and state.labeled[done[0]] == {"iteration": 0, "by": "alice"}
    (record,) = state.corrections
    assert record["id"] == done[0] and record["by"] == "reviewer" and record["source"] == str(path)
    assert [run["classes"][c] for c in record["before"]] == truth[done[0]]
    assert [run["classes"][c] for c in record["after"]] == fixed
    assert record["when"].endswith("Z")
    # the same export again: nothing changes (a file is imported once)
    bytes_before = state_files(run["state_dir"])
    assert import_labels(run["state_dir"], path, allow_changes=True)["already_imported"]
    assert state_files(run["state_dir"]) == bytes_before


def test_relabel_verb_records_who_and_the_earlier_answer(run, capsys):
    sid, truth = run["labeled"][0], run["truth"]
    fixed = _other(truth[sid])
    assert cli(["relabel", run["state_dir"], sid, "--labels", ";".join(fixed), "--by", "bob"]) == 0
    assert "label changed; the next training uses it" in capsys.readouterr().out
    assert _names(run, sid) == fixed
    (record,) = _state(run).corrections
    assert (record["id"], record["by"], record["source"]) == (sid, "bob", "labels given by bob")
    before = state_files(run["state_dir"])
    assert cli(["relabel", run["state_dir"], sid, "--labels", "spaceship", "--by", "bob"]) == 2
    assert "class name(s) ['spaceship']" in capsys.readouterr().err
    assert state_files(run["state_dir"]) == before


def test_the_next_training_uses_corrected_labels(make_config):
    """The executor's ``label_overrides`` carry the corrected labels; skipped ids are not trained on."""
    seen = []

    class Recording(LocalExecutor):
        def train(self, labeled_ids, label_overrides, out_dir, init_checkpoint, seed):
            seen.append((list(labeled_ids), dict(label_overrides)))
            return super().train(labeled_ids, label_overrides, out_dir, init_checkpoint, seed)

    cfg = make_config(mode="human", iterations=2)
    quiet = lambda s: None  # noqa: E731
    ActiveLearner(cfg, Recording(cfg), log=quiet).run()  # waits for the initial set
    manifest = load_manifest(cfg.shards_dir)
    classes = list(manifest.classes)
    initial = StateStore(cfg.state_dir).load().pending["ids"]
    import_labels_from(cfg, {sid: [classes[0]] for sid in initial})
    ActiveLearner(cfg, Recording(cfg), log=quiet).run()  # trains iteration 0, queries, waits
    assert seen[-1][1] == {sid: [0] for sid in initial}
    relabel(cfg.state_dir, {initial[0]: [classes[1], classes[2]]}, by="reviewer")
    pending = StateStore(cfg.state_dir).load().pending["ids"]
    skip_images(cfg.state_dir, [pending[0]], reason="cloud cover", by="alice")
    import_labels_from(cfg, {sid: [classes[3]] for sid in pending[1:]})
    ActiveLearner(cfg, Recording(cfg), log=quiet).step()  # trains iteration 1
    labeled, overrides = seen[-1]
    assert overrides[initial[0]] == [1, 2] and overrides[initial[1]] == [0]
    assert pending[0] not in labeled and pending[0] not in overrides and set(pending[1:]) <= set(labeled)


def import_labels_from(cfg, mapping: dict) -> dict:
    """Fill the exported batch.csv with ``mapping`` and import it (the real file path)."""
    out = export_batch(cfg.state_dir)
    rows = list(csv.DictReader(open(out / "batch.csv")))
    for row in rows:
        row["labels"] = ";".join(mapping[row["id"]])
    path = out / "filled.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return import_labels(cfg.state_dir, path)


# -- disagreements -------------------------------------------------------------------------

TWO = {"who": [("1", "2026-11-28T10:00:00Z"), ("2", "2026-11-28T11:00:00Z")]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_disagreement_is_refused_in_one_wording(run, fmt):
    p = run["pending"]
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError) as err:
        import_labels(run["state_dir"], run["write"](fmt, {p[0]: [["trees"], ["sea"]]}, who={p[0]: TWO["who"]}))
    message = str(err.value)
    assert "task 1" in message
    assert f"id {p[0]!r}: its 2 annotations disagree (['trees'] by 1 at " in message and "; ['sea'] by 2 at " in message
    assert "--on-disagreement majority|latest|prefer=ANNOTATOR" in message
    assert state_files(run["state_dir"]) == before


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("policy, expected", [("latest", ["sea"]), ("prefer=1", ["trees"]), ("prefer=2", ["sea"])])
def test_latest_and_preferred_annotator(run, fmt, policy, expected):
    p = run["pending"]
    # the later answer first in the file: "latest" goes by the annotation's time
    who = {p[0]: list(reversed(TWO["who"]))}
    result = import_labels(
        run["state_dir"], run["write"](fmt, {p[0]: [["sea"], ["trees"]]}, who=who), on_disagreement=policy
    )
    assert result["imported"] == 1 and _names(run, p[0]) == expected
    assert result["resolved"][0].startswith(f"id {p[0]!r}: {policy} kept {expected} by ")


@pytest.mark.parametrize("fmt", FORMATS)
def test_majority_and_its_ties(run, fmt):
    p = run["pending"]
    three = [("1", "2026-11-28T10:00:00Z"), ("2", "2026-11-28T11:00:00Z"), ("3", "2026-11-28T12:00:00Z")]
    answers = {p[0]: [["sea"], ["trees"], ["sea"]], p[1]: [["sea"], ["trees"]]}
    path = run["write"](fmt, answers, who={p[0]: three, p[1]: three[:2]})
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError) as err:  # p[1]: one against one
        import_labels(run["state_dir"], path, on_disagreement="majority")
    assert "task 2" in str(err.value) and f"id {p[1]!r}: its 2 annotations disagree" in str(err.value)
    assert "majority keeps none, no majority (1 against 1)" in str(err.value)
    assert f"id {p[0]!r}" not in str(err.value)  # two against one is settled
    assert state_files(run["state_dir"]) == before
    path = run["write"](fmt, {p[0]: answers[p[0]]}, "settled", who={p[0]: three})
    assert import_labels(run["state_dir"], path, on_disagreement="majority")["imported"] == 1
    assert _names(run, p[0]) == ["sea"]


def test_prefer_an_annotator_who_did_not_answer_is_refused(run):
    p = run["pending"]
    path = run["write"]("JSON", {p[0]: [["trees"], ["sea"]]}, who={p[0]: TWO["who"]})
    with pytest.raises(LabelImportError, match="prefer=carol keeps none, carol did not annotate it"):
        import_labels(run["state_dir"], path, on_disagreement="prefer=carol")


def test_an_unknown_policy_is_refused(run):
    with pytest.raises(
        ConfigError, match="'on_disagreement' parameter must be one of refuse, majority, latest, prefer=ANNOTATOR"
    ):
        import_labels(run["state_dir"], run["write"]("JSON", {}), on_disagreement="vote")


# -- unlabelable images --------------------------------------------------------------------


def test_a_skipped_label_studio_task_leaves_the_pool_and_completes_the_batch(run):
    p, truth = run["pending"], run["truth"]
    answers = {**{sid: truth[sid] for sid in p[1:]}, p[0]: "skip"}
    result = import_labels(run["state_dir"], run["write"]("JSON", answers), annotator="alice")
    assert (result["imported"], result["phase"], result["remaining"]) == (4, "train", 0)
    assert result["skipped"] == [f"export.json task 1 (id {p[0]!r})"]
    state = _state(run)
    assert state.unlabelable[p[0]]["reason"] == "skipped in Label Studio" and state.unlabelable[p[0]]["by"] == "alice"
    assert p[0] not in state.labeled and state.n_labeled == 9


@pytest.mark.parametrize("fmt", ["JSON_MIN", "CSV"])
def test_the_unlabelable_choice_marks_a_skip_in_json_min_and_csv(run, fmt):
    p = run["pending"]
    result = import_labels(run["state_dir"], run["write"](fmt, {p[0]: ["unlabelable"], p[1]: ["trees"]}))
    assert result["imported"] == 1 and result["remaining"] == 3
    assert _state(run).unlabelable[p[0]]["reason"] == "marked unlabelable in Label Studio"


def test_batch_csv_unlabelable_with_a_reason(run, tmp_path):
    p, truth = run["pending"], run["truth"]
    path = tmp_path / "batch.csv"
    path.write_text(
        "id,labels\n"
        + f'{p[0]},"unlabelable: cloud cover, 80%"\n'
        + "".join(f"{sid},{';'.join(truth[sid])}\n" for sid in p[1:])
    )
    assert import_labels(run["state_dir"], path)["phase"] == "train"
    assert _state(run).unlabelable[p[0]]["reason"] == "cloud cover, 80%"


def test_skip_verb_and_its_refusals(run, capsys):
    p, done = run["pending"], run["labeled"]
    before = state_files(run["state_dir"])
    assert cli(["skip", run["state_dir"], done[0], "--reason", "clouds"]) == 2
    assert "already labeled" in capsys.readouterr().err and state_files(run["state_dir"]) == before
    assert cli(["skip", run["state_dir"], "no_such_id", "--reason", "clouds"]) == 2
    assert "not an image of the archive's pool" in capsys.readouterr().err
    assert cli(["skip", run["state_dir"], p[0], p[1], "--reason", "no data", "--by", "bob"]) == 0
    assert "marked 2 image(s) unlabelable" in capsys.readouterr().out
    state = _state(run)
    assert state.pending["ids"] == p[2:] and state.unlabelable[p[1]]["by"] == "bob"
    # a later answer for a skipped image is a change: refused by default, taken with --allow-changes
    with pytest.raises(LabelImportError, match=f"id {p[0]!r} was marked unlabelable .*--allow-changes"):
        import_labels(run["state_dir"], run["write"]("JSON", {p[0]: ["trees"]}, "late"))
    import_labels(run["state_dir"], run["write"]("JSON", {p[0]: ["trees"]}, "late2"), allow_changes=True)
    state = _state(run)
    assert p[0] not in state.unlabelable and p[0] in state.labeled and state.corrections[-1]["before"] is None


def test_skipped_images_are_never_queried_and_numbering_is_one(make_config):
    """Skip all but b unlabeled pool images: the query must return exactly the rest.
    The log, the export folder, the prediction version and the checkpoint name one batch alike."""
    logs: list[str] = []
    cfg = make_config(mode="human", iterations=3, strategy="mge+clustering")
    ActiveLearner(cfg, LocalExecutor(cfg), log=logs.append).run()
    manifest = load_manifest(cfg.shards_dir)
    initial = StateStore(cfg.state_dir).load().pending["ids"]
    assert export_batch(cfg.state_dir).name == "initial"
    truth = _truth(manifest, initial)
    import_labels_from(cfg, truth)
    ActiveLearner(cfg, LocalExecutor(cfg), log=logs.append).run()  # iteration 0 trains and queries
    state = StateStore(cfg.state_dir).load()
    assert state.pending["iteration"] == 1
    out = export_batch(cfg.state_dir, options=ExportOptions(predictions="preselect"))
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert out.name == batch_name(1) == "iter-0000"
    assert {t["predictions"][0]["model_version"] for t in tasks} == {"raydal-iter-0000"}
    assert any(line.startswith("iter 0: selected 5 ") and "as batch iter-0000" in line for line in logs)
    assert "/checkpoints/iter-0000" in state.history[-1]["checkpoint"]  # the model that made the query
    # skip every unlabeled pool image but 5, then answer the batch
    pool = [str(i) for i in read_ids(manifest, "pool")]
    rest = [i for i in pool if i not in state.labeled and i not in state.pending["ids"]]
    keep, gone = rest[:5], rest[5:]
    skip_images(cfg.state_dir, gone, reason="no data", by="alice")
    import_labels_from(cfg, _truth(manifest, state.pending["ids"]))
    ActiveLearner(cfg, LocalExecutor(cfg), log=logs.append).run()  # iteration 1 trains and queries
    state = StateStore(cfg.state_dir).load()
    assert sorted(state.pending["ids"]) == sorted(keep)
    assert state.n_labeled == len(initial) + 5 and set(gone) == set(state.unlabelable)
    assert export_batch(cfg.state_dir).name == "iter-0001"


def _truth(manifest, ids) -> dict[str, list[str]]:
    from raydal.data.shards import read_split

    data = read_split(manifest, "pool", ids=list(ids))
    return {sid: [manifest.classes[c] for c in row.nonzero()[0]] for sid, row in zip(data["id"], data["labels"])}


# -- state files ---------------------------------------------------------------------------


def test_a_state_written_before_corrections_and_skips_loads(run):
    store = StateStore(run["state_dir"])
    data = json.loads(store.read_bytes("state.json"))
    for key in ("unlabelable", "corrections", "checksum"):
        data.pop(key, None)
    old = ALState.from_state_dict(data)
    assert old.unlabelable == {} and old.corrections == [] and old.n_labeled == 5


# -- --print-config's stopping line ---------------------------------------------------------


def test_stopping_line_counts_the_archives_labeled_pool_images(tmp_path):
    root = synthesize("folder", tmp_path / "archive", n=48, size=16, seed=3, labeled_share=0.75)
    shards = prepare(
        "folder",
        root,
        tmp_path / "shards",
        labels=root / "labels.csv",
        classes=root / "classes.txt",
        test_share=0.25,
        val_share=0.25,
    ).root
    manifest = load_manifest(shards)
    known = manifest.splits["pool"]["count"] - manifest.unlabeled["pool"]
    assert known > 4
    exp = ExperimentConfig(run=_folder_config(shards, tmp_path, initial_labeled=4))
    assert (
        f"stops at {known + 2 * 4} labels ({known} initial: the pool images labeled in the archive + 2 rounds "
        "of 4)" in exp.stopping_rule()
    )
    missing = ExperimentConfig(run=_folder_config(tmp_path / "not-yet", tmp_path, initial_labeled=4))
    assert missing.stopping_rule().startswith("stops at at least 12 labels (4 initial, or more")


def _folder_config(shards, tmp_path, **overrides):
    from raydal.config import ALConfig

    fields = dict(
        dataset="folder",
        shards_dir=str(shards),
        state_dir=str(tmp_path / "state"),
        mode="human",
        b=4,
        iterations=2,
        seed=0,
        backbone="smallcnn",
        executor="local",
    )
    fields.update(overrides)
    return ALConfig(**fields)


def test_a_class_named_unlabelable_stays_a_class(run, tmp_path):
    """Only Label Studio's Skip (or a reason) marks a skip in a project with a class of that name."""
    from raydal.al.humanloop import LabelCheck
    from raydal.al.labelfiles import LabelFile

    p = run["pending"]
    path = tmp_path / "batch.csv"
    path.write_text(f"id,labels\n{p[0]},unlabelable\n{p[1]},unlabelable: haze\n")
    state = _state(run)
    check = LabelCheck(state, [*run["classes"], "unlabelable"], set(run["truth"]))
    for record in LabelFile(path).records():
        check.add(record)
    check.finish()
    assert check.new == {p[0]: [len(run["classes"])]} and check.skip == {p[1]: "haze"}
