"""The report's query diagnostics on tiny real runs: recorded at query time, printed for finished runs."""

import json

import numpy as np
import pytest

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.al.poolids import positions
from raydal.al.report import build_report
from raydal.al.state import StateStore
from raydal.data.shards import iter_batches, load_manifest
from raydal.models import load_checkpoint
from raydal.query import get_strategy, score_pool
from raydal.query.diagnostics import HISTORY_KEY, spearman


def _run(make_config, tmp_path, name, **overrides):
    cfg = make_config(state_dir=str(tmp_path / name), **overrides)
    return cfg, ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()


def test_each_query_records_its_diagnostics_and_the_report_prints_them(make_config, tmp_path):
    train = {"epochs": 3, "batch_size": 8, "lr": 0.05, "threshold": 0.45}
    cfg, state = _run(make_config, tmp_path, "mge", strategy="mge+clustering", train=train)
    manifest = load_manifest(cfg.shards_dir)
    store = StateStore(cfg.state_dir)
    queried = state.history[:-1]
    assert len(queried) == 2 and HISTORY_KEY not in state.history[-1]  # the last model has no query
    for h in queried:
        d = h[HISTORY_KEY]
        assert d["uncertainty"] == "mge" and d["threshold"] == 0.45 and d["n_picked"] == cfg.b
        for key in ("spearman_feature_norm", "spearman_n_labels"):
            assert d[key] is None or -1.0 <= d[key] <= 1.0
        assert d["spearman_feature_norm"] is not None  # an untrained-ish CNN's ||h|| varies over the pool
        # the histograms are the pool probabilities saved at that query, at the run's threshold
        ids, probs = store.load_probs(f"{state.pool_probs_file.rpartition('/')[0]}/iter-{h['iteration']:04d}.npz")
        assert d["n_scored"] == len(ids) and len(d["label_counts"]["pool"]) == manifest.num_classes
        assert d["label_counts"]["pool"] == (probs >= 0.45).sum(axis=0).tolist()
        picked = probs[positions(ids, h["selected"])] >= 0.45
        assert d["label_counts"]["picked"] == picked.sum(axis=0).tolist()
        assert d["labels_per_image"]["picked"] == pytest.approx(picked.sum(axis=1).mean(), abs=1e-4)
        # the correlations are those of the pool scored again with that iteration's model
        labeled = {i for i, r in state.labeled.items() if r["iteration"] <= h["iteration"]}
        model = load_checkpoint(h["checkpoint"])
        batches = iter_batches(manifest, "pool", cfg.score_batch_size, exclude=labeled)
        again = score_pool(model, batches, get_strategy(cfg.strategy), 1)
        np.testing.assert_array_equal(again.ids, ids)
        assert d["spearman_feature_norm"] == pytest.approx(spearman(again.uncertainty, again.feature_norm), abs=2e-4)
        n_labels = (again.probs >= 0.45).sum(axis=1)
        want = spearman(again.uncertainty, n_labels)
        assert d["spearman_n_labels"] == (None if want is None else pytest.approx(want, abs=2e-4))

    # a random run (nothing scored) and a run made before the diagnostics existed
    _, _ = _run(make_config, tmp_path, "random", strategy="random", train=train)
    _, old_state = _run(make_config, tmp_path, "old", strategy="mge+clustering", seed=1, train=train)
    old_store = StateStore(str(tmp_path / "old"))
    for h in old_state.history:
        h.pop(HISTORY_KEY, None)
    old_store.save(old_state)

    dirs = [cfg.state_dir, str(tmp_path / "random"), str(tmp_path / "old")]
    summary = build_report(dirs, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    section = md.split("## Query diagnostics (beyond the paper)")[1].split("\n## ")[0]
    entries = summary["query_diagnostics"][cfg.state_dir]
    assert [e["iteration"] for e in entries] == [0, 1] and all(e["recorded"] for e in entries)
    first = entries[0]
    rho = f"{first['spearman_feature_norm']:+.2f}"
    lpi = first["labels_per_image"]
    assert f"| {cfg.state_dir} | 0 | 10 | {rho} |" in section
    assert f"{lpi['picked']:.2f} vs {lpi['pool']:.2f}" in section
    # the over-picked classes are named from the manifest, with their shares
    assert any(e["over_picked"] for e in entries)
    for c in (c for e in entries for c in e["over_picked"]):
        assert c["class"] in manifest.classes and c["picked"] > c["pool"]
        assert f"{c['class']} {100 * c['picked']:.0f}% vs {100 * c['pool']:.0f}%" in section
    assert f"| {tmp_path / 'random'} | all 2 | – | not scored (random) |" in section
    assert f"| {tmp_path / 'old'} | all 2 | – | not recorded (a run from before the query diagnostics) |" in section
    # the group table: the mean over the recorded queries; the old run's queries are counted as not recorded
    mean_rho = np.mean([e["spearman_feature_norm"] for e in entries])
    assert f"| mge+clustering | 2 (+2 not recorded) | {mean_rho:+.2f} |" in section
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [e["recorded"] for e in report["query_diagnostics"][str(tmp_path / "old")]] == [False, False]
