"""`raydal import-labels` killed before, during and after recording: the state is the old one or
the new one, never a mix, and importing again ends where an uninterrupted import ends."""

from __future__ import annotations

import shutil
import signal

import pytest
from rel_helpers import raydal_cli, read_state

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.config import ALConfig
from raydal.data.shards import load_manifest, read_split

pytestmark = pytest.mark.reliability


@pytest.fixture
def waiting_state(tiny_shards, tmp_path):
    """A human-mode state dir waiting for the 10 initial labels, and a filled label file."""
    cfg = ALConfig(
        dataset="ucmerced",
        shards_dir=str(tiny_shards),
        state_dir=str(tmp_path / "state"),
        mode="human",
        strategy="random",
        b=5,
        initial_labeled=10,
        iterations=1,
        seed=0,
        backbone="smallcnn",
        executor="local",
        train={"epochs": 1, "batch_size": 8},
    )
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    manifest = load_manifest(tiny_shards)
    data = read_split(manifest, "pool", ids=state.pending["ids"])
    rows = ["id,labels"] + [
        f"{sid},{';'.join(c for c, on in zip(manifest.classes, lab) if on) or manifest.classes[0]}"
        for sid, lab in zip(data["id"], data["labels"])
    ]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return tmp_path / "state", labels


def test_import_killed_at_each_point_then_repeated(waiting_state, tmp_path):
    state_dir, labels = waiting_state
    reference = tmp_path / "reference"
    shutil.copytree(state_dir, reference)
    assert raydal_cli("import-labels", str(reference), str(labels)).returncode == 0
    before = (state_dir / "state.json").read_bytes()

    for point in ("import:start", "import:mid", "save:mid"):  # nothing recorded yet
        killed = raydal_cli("import-labels", str(state_dir), str(labels), fault=point)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        assert (state_dir / "state.json").read_bytes() == before, point

    killed = raydal_cli("import-labels", str(state_dir), str(labels), fault="import:end")  # recorded
    assert killed.returncode == -signal.SIGKILL
    again = raydal_cli("import-labels", str(state_dir), str(labels))
    assert again.returncode == 0 and "already imported" in again.stdout, again.stdout + again.stderr

    final, expected = read_state(state_dir), read_state(reference)
    assert final["labeled"] == expected["labeled"] and final["human_labels"] == expected["human_labels"]
    assert final["phase"] == expected["phase"] == "train" and final["imports"] == expected["imports"]
    assert not list(state_dir.glob(".state.json.*.tmp"))
