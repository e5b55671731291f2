"""raydal.Learner: the docs' example runs, teach() validates and saves like an import, CLI interplay."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from raydal import Learner
from raydal.al.state import StateStore
from raydal.cli import main
from raydal.data.shards import load_manifest, prepare, read_ids
from raydal.data.synth import synthesize
from raydal.exceptions import ConfigError, LabelImportError
from raydal.utils import normal_location

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_docs_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    learner, predictions = namespace["learner"], namespace["predictions"]
    assert len(predictions) == 40 and {"id", "path", "split", "p_water", "predicted"} <= set(predictions.columns)
    assert [h["n_labeled"] for h in learner.history] == [8, 12]
    assert len(learner.pending) == 4 and (tmp_path / "my-run" / "predictions" / "predictions.csv").exists()
    assert (tmp_path / "my-run" / "predictions" / "model" / "model.pt2").exists()
    # annotators' labels were saved as given
    state = learner.state
    assert {tuple(v) for k, v in state.human_labels.items() if state.labeled[k]["iteration"] == 1} == {
        tuple(sorted(learner.classes.index(c) for c in ("forest", "cropland")))
    }


@pytest.fixture
def shards(tmp_path):
    root = synthesize("folder", tmp_path / "archive", n=24, size=16, seed=2, labeled_share=0.25)
    return prepare("folder", root, tmp_path / "shards", labels=root / "labels.csv", classes=root / "classes.txt").root


def _learner(state_dir, shards=None):
    return Learner(
        state_dir,
        shards,
        strategy="random",
        b=3,
        initial_labeled=6,
        iterations=1,
        backbone="smallcnn",
        train={"epochs": 1, "batch_size": 8, "lr": 0.05},
        log=None,
    )


def test_teach_validates_like_a_label_file_and_the_cli_takes_over(shards, tmp_path):
    state_dir = tmp_path / "run"
    learner = _learner(state_dir, shards)
    ids = learner.query()  # no training needed yet: the initial batch waits for annotators
    m = load_manifest(shards)
    known = set(read_ids(m, "pool", labeled=True))
    assert len(ids) == 6 - len(known) and not set(ids) & known and learner.history == []  # topped up to 6
    before = (state_dir / "state.json").read_bytes()
    val_id = str(read_ids(m, "val")[0])
    with pytest.raises(LabelImportError) as info:
        learner.teach({ids[0]: ["water", "lava"], ids[1]: [], "nope": "water", val_id: "water"})
    reasons = " | ".join(r for _, r in info.value.problems)
    for needle in (
        "['lava'] not in the project's classes",
        "empty label set",
        "unknown id 'nope'",
        "not in the pending",
    ):
        assert needle in reasons, (needle, reasons)
    assert (state_dir / "state.json").read_bytes() == before  # nothing changed
    with pytest.raises(LabelImportError, match="mapping"):
        learner.teach([ids[0]])

    result = learner.teach({ids[0]: "water;forest"})
    assert (result["imported"], result["remaining"], result["phase"]) == (1, len(ids) - 1, "label")
    again = learner.teach({ids[0]: ["forest", "water"]})  # the same labels again: nothing changes
    assert (again["imported"], again["unchanged"]) == (0, 1)
    with pytest.raises(LabelImportError, match="cannot change"):
        learner.teach({ids[0]: "water"})
    assert StateStore(str(state_dir)).load().human_labels[ids[0]] == sorted(
        [m.classes.index("water"), m.classes.index("forest")]
    )

    # the command line takes over: export, annotate the rest in batch.csv, import
    assert main(["export", str(state_dir), "--out", str(tmp_path / "export")]) == 0
    path = tmp_path / "export" / "batch.csv"
    rows = list(csv.DictReader(open(path)))
    assert {r["id"] for r in rows} == set(ids[1:])
    for r in rows:
        r["labels"] = "cropland"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["import-labels", str(state_dir), str(path)]) == 0

    # ... and a Learner reopened on the state dir trains on all of it and asks for the next batch
    again = Learner(state_dir, log=None)
    assert again.config.strategy == "random" and again.pending == []
    next_ids = again.query()
    assert len(next_ids) == 3 and again.history[0]["n_labeled"] == 6
    with pytest.raises(ConfigError, match="uses the shards"):
        Learner(state_dir, tmp_path)
    with pytest.raises(ConfigError, match="pass shards_dir"):
        Learner(tmp_path / "empty")


def test_learner_resolves_its_config_like_raydal_run(tiny_shards, tmp_path, capsys):
    """On the same shards a Learner and `raydal run --print-config` resolve one configuration:
    the dataset's paper protocol (b = 20 on UCMerced, up to 400 labels), then the caller's settings."""
    state = tmp_path / "run"
    learner = Learner(state, tiny_shards, strategy="random", m=2, train={"epochs": 2}, log=None)
    argv = [
        "run",
        "ucmerced",
        "--print-config",
        "--shards-dir",
        normal_location(tiny_shards),
        "--state-dir",
        str(state),
        "--mode",
        "human",
        "--executor",
        "local",
        "--strategy",
        "random",
        "--m",
        "2",
        "--epochs",
        "2",
    ]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert learner.config.to_dict() == {k: printed[k] for k in learner.config.to_dict()}
    cfg = learner.config
    assert (cfg.dataset, cfg.b, cfg.initial_labeled, cfg.label_budget, cfg.iterations) == (
        "ucmerced",
        20,
        40,
        400,
        None,
    )
    assert (cfg.train["epochs"], cfg.train["batch_size"], cfg.train["lr"], cfg.m) == (2, 10, 0.025, 2)
    assert (cfg.mode, cfg.executor) == ("human", "local")
    with pytest.raises(ConfigError, match=r"Unknown Learner setting\(s\) \['trials'\]"):
        Learner(tmp_path / "other", tiny_shards, trials=3, log=None)
