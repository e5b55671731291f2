"""SIGKILL the job process mid-run, restart it on the same state: no label lost, same result."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _job(shards, state_dir):
    return [
        sys.executable, str(ROOT / "jobs" / "al_ucmerced.py"), "--executor", "local",
        "--shards-dir", str(shards), "--state-dir", str(state_dir), "--strategy", "mge+clustering",
        "--backbone", "smallcnn", "--epochs", "2", "--batch-size", "8", "--lr", "0.05",
        "--b", "5", "--m", "2", "--initial-labeled", "10", "--iterations", "3", "--trials", "1", "--no-report",
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
    proc = subprocess.Popen(_job(tiny_shards, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        s = _state(run)
        if s and len(s["labeled"]) >= 15 and s["phase"] == "train":  # mid-iteration 1: training
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            killed_at = s
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None, "the job finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    survived = _state(run)
    assert len(survived["labeled"]) >= 15  # nothing labeled before the kill was lost

    done = subprocess.run(_job(tiny_shards, run), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    final, expected = _state(run), _state(ref)
    assert final["phase"] == expected["phase"] == "done"
    assert final["labeled"] == expected["labeled"]
    assert [h["n_labeled"] for h in final["history"]] == [10, 15, 20, 25]
    assert [h.get("selected") for h in final["history"]] == [h.get("selected") for h in expected["history"]]
