"""SIGKILL the job process mid-run, restart it on the same state: no label lost, same result."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from raydal.constants import ENV_FAULT

ROOT = Path(__file__).resolve().parents[2]


def _job(shards, state_dir):
    return [
        sys.executable,
        str(ROOT / "jobs" / "al_ucmerced.py"),
        "--executor",
        "local",
        "--shards-dir",
        str(shards),
        "--state-dir",
        str(state_dir),
        "--strategy",
        "mge+clustering",
        "--backbone",
        "smallcnn",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--b",
        "5",
        "--m",
        "2",
        "--initial-labeled",
        "10",
        "--iterations",
        "3",
        "--trials",
        "1",
        "--no-report",
    ]


def _state(state_dir):
    try:
        return json.loads((Path(state_dir) / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tiny_shards, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_job(tiny_shards, ref), check=True, env=env, capture_output=True, timeout=600)

    run = tmp_path / "killed"
    # SIGKILL of itself after the first epoch of iteration 1's training (the 3rd epoch of the run:
    # 2 epochs per fit), reached deterministically rather than by timing (raydal.faults)
    proc = subprocess.run(
        _job(tiny_shards, run), env={**env, ENV_FAULT: "train:mid@3"}, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _state(run)["phase"] == "train"
    survived = _state(run)
    assert len(survived["labeled"]) == 15  # nothing labeled before the kill was lost

    done = subprocess.run(_job(tiny_shards, run), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    final, expected = _state(run), _state(ref)
    assert final["phase"] == expected["phase"] == "done"
    assert final["labeled"] == expected["labeled"]
    assert [h["n_labeled"] for h in final["history"]] == [10, 15, 20, 25]
    assert [h.get("selected") for h in final["history"]] == [h.get("selected") for h in expected["history"]]
