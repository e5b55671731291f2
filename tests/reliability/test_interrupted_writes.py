"""A damaged state.json (a truncated or half-copied file, a partial temp file) is detected on load:
the last complete state is used and what was discarded is said."""

from __future__ import annotations

import json

import pytest

from raydal.al.state import PREV_FILE, STATE_FILE, ALState, StateStore
from raydal.exceptions import StateError

pytestmark = pytest.mark.reliability


def _two_generations(root) -> tuple[StateStore, ALState, ALState, list[str]]:
    messages: list[str] = []
    store = StateStore(str(root), log=messages.append)
    first = ALState(
        config={"strategy": "ll"},
        fingerprint="f",
        phase="label",
        pending={"iteration": 0, "ids": ["a", "b"], "probs": {}},
    )
    store.save(first)
    second = ALState.from_state_dict(first.state_dict())
    second.record_labels({"a": None, "b": None}, by="oracle")
    store.save(second)
    return store, first, second, messages


@pytest.mark.parametrize("damage", ["truncated", "bit-flip", "empty"])
def test_damaged_state_falls_back_to_previous_generation(tmp_path, damage):
    store, first, second, messages = _two_generations(tmp_path)
    assert store.load().state_dict() == second.state_dict()
    raw = (tmp_path / STATE_FILE).read_bytes()
    if damage == "truncated":  # a non-atomic copy cut short
        broken = raw[: len(raw) // 2]
    elif damage == "bit-flip":  # still valid JSON: only the checksum tells
        broken = raw.replace(b'"oracle"', b'"oraclE"')
        json.loads(broken)
    else:
        broken = b""
    (tmp_path / STATE_FILE).write_bytes(broken)

    reader = StateStore(str(tmp_path), log=messages.append)
    assert reader.load().state_dict() == first.state_dict()  # readers use the fallback, write nothing
    assert (tmp_path / STATE_FILE).read_bytes() == broken

    with store.lock("test"):  # the holder repairs: the damaged file is kept aside, state.json complete
        assert store.load().state_dict() == first.state_dict()
    kept = list(tmp_path.glob(f"{STATE_FILE}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == broken
    said = "\n".join(messages)
    assert "corrupt" in said and "discarded" in said and "iteration 0, phase label, 0 labeled" in said
    assert StateStore(str(tmp_path)).load().state_dict() == first.state_dict()
    assert json.loads((tmp_path / PREV_FILE).read_bytes())["phase"] == "label"


def test_partial_temp_file_is_removed_and_named(tmp_path):
    store, _, second, messages = _two_generations(tmp_path)
    partial = tmp_path / f".{STATE_FILE}.x1y2.tmp"
    partial.write_bytes((tmp_path / STATE_FILE).read_bytes()[:100])
    assert store.load().state_dict() == second.state_dict()
    assert partial.exists()  # only the lock holder cleans up
    with store.lock("test"):
        assert store.load().state_dict() == second.state_dict()
    assert not partial.exists() and any(str(partial) in m and "cut short" in m for m in messages)


def test_no_complete_generation_is_an_error(tmp_path):
    store, *_ = _two_generations(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(b'{"version": 1, "pha')
    (tmp_path / PREV_FILE).write_bytes(b"")
    with pytest.raises(StateError, match="No complete state.*not valid JSON.*state.json.prev.*backup"):
        store.load()


def test_damaged_state_is_never_promoted_to_prev(tmp_path):
    store, first, second, _ = _two_generations(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(b"{trunc")
    store.save(second)  # e.g. a process that loaded before the damage saves again
    assert (tmp_path / PREV_FILE).read_bytes() != b"{trunc"
    assert StateStore(str(tmp_path)).load().state_dict() == second.state_dict()
