"""Human in the loop on your own, mostly unlabeled archive (a folder archive with a partial labels CSV)."""

from __future__ import annotations

import csv

import pytest

from raydal.al.executor import LocalExecutor
from raydal.al.humanloop import export_batch, import_labels
from raydal.al.loop import ActiveLearner
from raydal.al.report import build_report
from raydal.config import ALConfig
from raydal.data.shards import load_manifest, prepare, read_ids
from raydal.data.synth import synthesize
from raydal.exceptions import StateError


@pytest.fixture(scope="module")
def folder_shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("folder-al")
    root = synthesize("folder", base / "archive", n=48, size=16, seed=3, labeled_share=0.25)
    return prepare(
        "folder",
        root,
        base / "shards",
        labels=root / "labels.csv",
        classes=root / "classes.txt",
        test_share=0.25,
        val_share=0.25,
    ).root


def _config(shards, tmp_path, **overrides) -> ALConfig:
    fields = dict(
        dataset="folder",
        shards_dir=str(shards),
        state_dir=str(tmp_path / "state"),
        mode="human",
        strategy="mge+clustering",
        b=4,
        m=2,
        initial_labeled=8,
        iterations=2,
        seed=0,
        backbone="smallcnn",
        executor="local",
        score_batch_size=32,
        train={"epochs": 1, "batch_size": 8, "lr": 0.05},
    )
    fields.update(overrides)
    return ALConfig(**fields)


def _fill(export_dir, classes) -> None:
    """An annotator: first class for every row of batch.csv."""
    path = export_dir / "batch.csv"
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        r["labels"] = classes[0]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_simulation_on_unlabeled_pool_is_refused(folder_shards, tmp_path):
    cfg = _config(folder_shards, tmp_path, mode="simulation")
    learner = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None)
    with pytest.raises(StateError, match="Simulation mode needs archive labels.*--mode human"):
        learner.run()


def test_human_run_starts_from_archive_labels_and_sends_the_rest_to_annotators(folder_shards, tmp_path):
    m = load_manifest(folder_shards)
    known = set(read_ids(m, "pool", labeled=True))
    unlabeled = set(read_ids(m, "pool", labeled=False))
    assert 0 < len(known) < 8 and unlabeled  # 12 labeled images, half held out: 6 in the pool
    cfg = _config(folder_shards, tmp_path)
    learner = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None)
    state = learner.run()
    # the initial set: the archive's labeled pool images + random unlabeled ones, waiting for annotators
    assert learner.waiting_for_labels and state.iteration == 0
    assert {i for i, r in state.labeled.items() if r["by"] == "archive"} == known
    assert len(state.pending["ids"]) == 8 - len(known) and set(state.pending["ids"]) <= unlabeled
    logged: list[str] = []
    out = export_batch(cfg.state_dir, log=logged.append)
    # thumbnails from the original GeoTIFFs (the manifest rebuilds the folder reader): one line, no fallback
    assert len(logged) == 1 and logged[0].startswith("thumbnails show bands R, G, B as R, G, B (by band name)")
    with open(out / "batch.csv") as f:
        assert all(r["path"].endswith(".tif") for r in csv.DictReader(f))
    _fill(out, m.classes)
    assert import_labels(cfg.state_dir, out / "batch.csv")["phase"] == "train"
    # train -> query -> wait: the next batch comes from the unlabeled pool images
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    assert state.history[0]["n_labeled"] == 8 and state.history[0]["test"]["n_samples"] == m.splits["test"]["count"]
    assert len(state.pending["ids"]) == 4 and not set(state.pending["ids"]) & set(state.labeled)


def test_without_a_test_split_the_report_says_so(tmp_path):
    root = synthesize("folder", tmp_path / "archive", n=24, size=16, seed=4, labeled_share=0.5)
    shards = prepare("folder", root, tmp_path / "shards", labels=root / "labels.csv", test_share=0, val_share=0).root
    cfg = _config(shards, tmp_path, initial_labeled=4, iterations=1)
    lines: list[str] = []
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lines.append).run()
    assert state.history[0]["test"]["n_samples"] == 0  # 12 archive labels, no annotator needed yet
    assert any("no labeled test split" in line for line in lines) and not any("nan" in line for line in lines)
    summary = build_report([cfg.state_dir], tmp_path / "report")
    assert summary["no_test_split"] == [cfg.state_dir]
    assert "No labeled test split" in (tmp_path / "report" / "report.md").read_text()
