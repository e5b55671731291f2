import json
import os

import numpy as np
import pytest

from raydal.al.state import ALState, StateStore
from raydal.exceptions import StateError


def _state():
    s = ALState(config={"strategy": "ll"}, fingerprint="abc")
    s.pending = {"iteration": 0, "ids": ["a", "b", "c"], "probs": {}}
    s.phase = "label"
    return s


def test_record_labels_partial_then_complete():
    s = _state()
    s.record_labels({"a": [1, 0], "b": None}, by="annotator")
    assert s.pending["ids"] == ["c"] and s.phase == "label"
    assert s.labeled["a"] == {"iteration": 0, "by": "annotator"}
    assert s.human_labels == {"a": [0, 1]}
    s.record_labels({"c": None}, by="oracle")
    assert s.pending is None and s.phase == "train" and s.n_labeled == 3
    assert s.labeled_ids() == ["a", "b", "c"]


def test_round_trip_and_probs(tmp_path):
    store = StateStore(str(tmp_path))
    assert not store.has_state()
    with pytest.raises(StateError, match="No active-learning state"):
        store.load()
    s = _state()
    store.save(s)
    assert store.load().state_dict() == s.state_dict()
    rel = store.save_probs("iter-0000.npz", np.array(["x", "y"]), np.array([[0.1, 0.9], [0.5, 0.5]]))
    ids, probs = store.load_probs(rel)
    assert ids.tolist() == ["x", "y"] and probs.dtype == np.float32 and probs.shape == (2, 2)


def test_crash_during_save_keeps_previous_state(tmp_path, monkeypatch):
    store = StateStore(str(tmp_path))
    s = _state()
    store.save(s)
    before = (tmp_path / "state.json").read_bytes()
    s.record_labels({"a": None, "b": None, "c": None}, by="oracle")

    def crash(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(s)
    monkeypatch.undo()
    assert (tmp_path / "state.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_corrupt_state_is_reported(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        StateStore(str(tmp_path)).load()
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "phase": "bogus"}))
    with pytest.raises(StateError, match="phase"):
        StateStore(str(tmp_path)).load()


def test_state_dir_on_cluster_storage_uri(make_config, tmp_path, monkeypatch):
    """A state dir given as a storage URI goes through pyarrow's filesystems end to end
    (file:// here; s3:// and gs:// take the same path), checkpoints included."""
    from raydal.al.executor import LocalExecutor
    from raydal.al.loop import ActiveLearner
    from raydal.models import load_checkpoint

    monkeypatch.setenv("RAYDAL_CACHE", str(tmp_path / "cache"))
    uri = f"file://{tmp_path}/remote-state"
    cfg = make_config(state_dir=uri, iterations=1, warm_start=True)
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    assert state.phase == "done" and [h["n_labeled"] for h in state.history] == [10, 15]
    ckpt = state.history[-1]["checkpoint"]
    assert ckpt == f"{uri}/checkpoints/iter-0001/checkpoint"
    assert (tmp_path / "remote-state" / "checkpoints" / "iter-0001" / "checkpoint" / "model.pt").exists()
    assert load_checkpoint(ckpt).num_classes == 17  # downloaded into the cache
    assert StateStore(uri).load().state_dict() == state.state_dict()
