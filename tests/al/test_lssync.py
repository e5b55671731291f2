"""raydal label-studio: the live link, through the real label_studio_sdk, against a fake server on 127.0.0.1
(tests/al/ls_fake.py). test_labelstudio_server.py runs the same link against a real Label Studio."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("label_studio_sdk")

from labeling_state import make_waiting_state, state_files
from ls_fake import FakeLabelStudio

from raydal.al.lssync import PULL_DIR, RECORD_FILE, LabelStudioError, Link, connect
from raydal.al.state import StateStore
from raydal.cli import main as cli
from raydal.exceptions import ConfigError, LabelImportError

KEY = "fake-token"


@pytest.fixture
def fake():
    with FakeLabelStudio(KEY) as server:
        yield server


@pytest.fixture
def waiting(tiny_shards, tmp_path):
    return make_waiting_state(tiny_shards, tmp_path / "state")


def _link(waiting, fake, **kw) -> Link:
    return Link(waiting["state_dir"], connect(fake.url, KEY), **kw)


def _human(state_dir, classes) -> dict:
    state = StateStore(state_dir).load()
    return {sid: [classes[c] for c in idx] for sid, idx in state.human_labels.items()}


def test_sync_pushes_once_pulls_once(waiting, fake):
    p, truth, classes = waiting["pending"], waiting["truth"], waiting["classes"]
    link = _link(waiting, fake)
    first = link.sync()
    (project,) = fake.projects.values()
    assert first["pushed"] == 5 and first["imported"] is None and project["title"] == "raydal state"
    assert project["show_collab_predictions"] is False and "raydal_hint" not in project["label_config"]
    tasks = sorted(fake.tasks.values(), key=lambda t: t["id"])
    # most uncertain first: mean max(p, 1 - p) ascending
    probs = StateStore(waiting["state_dir"]).load().pending["probs"]
    confidence = [
        np.mean(np.maximum(probs[t["data"]["raydal_id"]], 1 - np.array(probs[t["data"]["raydal_id"]]))) for t in tasks
    ]
    assert confidence == sorted(confidence) and {t["data"]["raydal_id"] for t in tasks} == set(p)
    assert all(not t["predictions"] for t in tasks)  # predictions none: nothing pre-selected

    before = state_files(waiting["state_dir"])
    assert link.sync()["pushed"] == 0 and len(fake.tasks) == 5  # run twice: nothing pushed twice
    assert state_files(waiting["state_dir"]) == before

    fake.annotate(fake.task_of(project["id"], p[0])["id"], truth[p[0]])
    fake.annotate(fake.task_of(project["id"], p[1])["id"], truth[p[1]])
    got = link.sync()
    assert (got["imported"]["imported"], got["pending"], got["phase"]) == (2, 3, "label")
    assert {s: _human(waiting["state_dir"], classes)[s] for s in p[:2]} == {s: truth[s] for s in p[:2]}
    before = state_files(waiting["state_dir"])
    again = link.sync()
    assert again["imported"] is None and again["pushed"] == 0  # nothing imported twice
    assert state_files(waiting["state_dir"]) == before

    for sid in p[2:]:
        fake.annotate(fake.task_of(project["id"], sid)["id"], truth[sid])
    done = link.sync()
    assert (done["imported"]["imported"], done["phase"]) == (3, "train")
    assert _human(waiting["state_dir"], classes) == {s: truth[s] for s in waiting["labeled"] + p}
    record = json.loads(StateStore(waiting["state_dir"]).read_bytes(RECORD_FILE))
    assert record["project"] == project["id"] and set(record["pushed"]) == set(p) and len(record["seen"]) == 5


def test_a_pull_cut_short_before_its_record_imports_nothing_twice(waiting, fake):
    p, truth = waiting["pending"], waiting["truth"]
    link = _link(waiting, fake)
    link.sync()
    pid = next(iter(fake.projects))
    fake.annotate(fake.task_of(pid, p[0])["id"], truth[p[0]])
    link.sync()
    store = StateStore(waiting["state_dir"])
    record = json.loads(store.read_bytes(RECORD_FILE))
    record["seen"] = []  # as if the sync stopped between import and record
    store.write_bytes(json.dumps(record).encode(), RECORD_FILE)
    state = store.load()
    got = link.sync()
    assert got["imported"]["already_imported"] and store.load().labeled == state.labeled


def test_a_changed_answer_is_refused_like_import_labels(waiting, fake):
    p, truth = waiting["pending"], waiting["truth"]
    link = _link(waiting, fake)
    link.sync()
    pid = next(iter(fake.projects))
    aid = fake.annotate(fake.task_of(pid, p[0])["id"], truth[p[0]])
    link.sync()
    other = ["sand"] if truth[p[0]] != ["sand"] else ["ship"]
    fake.edit(aid, other)
    before = state_files(waiting["state_dir"])
    with pytest.raises(LabelImportError, match=f"id {p[0]!r} was imported before"):
        link.sync()
    assert {k: v for k, v in state_files(waiting["state_dir"]).items() if not k.startswith(PULL_DIR)} == {
        k: v for k, v in before.items() if not k.startswith(PULL_DIR)
    }


def test_a_reviewers_fix_in_label_studio_becomes_a_correction(waiting, fake):
    p, truth, classes = waiting["pending"], waiting["truth"], waiting["classes"]
    _link(waiting, fake).sync()
    pid = next(iter(fake.projects))
    aid = fake.annotate(fake.task_of(pid, p[0])["id"], truth[p[0]])
    _link(waiting, fake).sync()
    fixed = ["sand"] if truth[p[0]] != ["sand"] else ["ship"]
    fake.edit(aid, fixed)
    got = _link(waiting, fake, import_options={"allow_changes": True}).sync()
    state = StateStore(waiting["state_dir"]).load()
    assert got["imported"]["changed"] == 1 and _human(waiting["state_dir"], classes)[p[0]] == fixed
    (correction,) = state.corrections
    assert correction["id"] == p[0] and [classes[c] for c in correction["before"]] == truth[p[0]]


def test_reuses_the_project_by_title_and_sets_the_predictions_mode(waiting, fake):
    Link(waiting["state_dir"], connect(fake.url, KEY), title="team A", export={"predictions": "hint"}).sync()
    (project,) = fake.projects.values()
    assert 'value="$raydal_hint"' in project["label_config"]
    task = next(iter(fake.tasks.values()))
    probs = StateStore(waiting["state_dir"]).load().pending["probs"][task["data"]["raydal_id"]]
    top = waiting["classes"][int(np.argmax(probs))]
    assert task["data"]["raydal_hint"].startswith(f"{top} {max(probs):.2f}") and not task["predictions"]
    os.remove(StateStore(waiting["state_dir"]).local_path(RECORD_FILE))  # a lost record: found again by title
    Link(waiting["state_dir"], connect(fake.url, KEY), title="team A", export={"predictions": "preselect"}).sync()
    assert len(fake.projects) == 1 and len(fake.tasks) == 5  # same project, no task pushed twice
    assert project["show_collab_predictions"] is True and "raydal_hint" not in project["label_config"]


def test_errors_name_the_fix(waiting, fake, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="--url"):
        connect()
    with pytest.raises(ConfigError, match="LABEL_STUDIO_API_KEY"):
        connect(fake.url)
    with pytest.raises(LabelStudioError, match="access token"):
        Link(waiting["state_dir"], connect(fake.url, "wrong")).sync()
    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # not installed
    with pytest.raises(ConfigError, match=r"pip install 'raydal\[labelstudio\]'"):
        connect(fake.url, KEY)


def test_cli_label_studio(waiting, fake, monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_URL", fake.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", KEY)
    assert cli(["label-studio", waiting["state_dir"], "--project", "cli"]) == 0
    out = capsys.readouterr().out
    assert "created Label Studio project" in out and "pushed 5 tasks" in out and "5 still pending" in out
    assert cli(["label-studio", waiting["state_dir"], "--api-key", "wrong"]) == 2
    assert "access token" in capsys.readouterr().err


def test_follow_labels_three_batches_without_a_file(make_config, fake, tiny_shards):
    """The team's loop: every batch pushed, answered in Label Studio (a cloudy image skipped), pulled,
    trained on, the next queried."""
    from raydal.al.experiment import run_trial_local
    from raydal.data.shards import load_manifest, read_split

    manifest = load_manifest(tiny_shards)
    data = read_split(manifest, "pool")
    truth = {sid: [manifest.classes[c] for c in np.flatnonzero(row)] for sid, row in zip(data["id"], data["labels"])}
    config = make_config(mode="human", iterations=2)
    run_trial_local(config)  # stops at the first batch
    answered: list[str] = []

    def annotator(task):  # answers each task as it arrives; skips the first of the second batch (a cloudy one)
        answered.append(task["data"]["raydal_id"])
        return None if len(answered) == 11 else truth[answered[-1]]

    fake.auto = annotator
    trained = []

    def train(state_dir):
        trained.append(StateStore(state_dir).load().n_labeled)
        run_trial_local(config)

    summary = Link(config.state_dir, connect(fake.url, KEY)).follow(train=train, poll_s=0.01, max_polls=3)
    state = StateStore(config.state_dir).load()
    assert summary["phase"] == "done" and state.phase == "done"
    assert len(trained) == 3  # three batches labeled in Label Studio, each one trained on
    pushed = {t["data"]["raydal_id"] for t in fake.tasks.values()}
    assert list(state.unlabelable) == [answered[10]]  # skipped in Label Studio: out of the pool, batch complete
    assert pushed == set(state.human_labels) | {answered[10]} and len(pushed) == 10 + 2 * 5
    assert all(
        sorted(state.human_labels[s]) == sorted(manifest.classes.index(c) for c in truth[s]) for s in state.human_labels
    )
