"""The job SIGKILLed at every fault point (phase boundaries, mid-phase, mid-save), then restarted.

Each restart resumes from the state dir; a chain of kills walks through a whole
run, and the run that finally completes has the labeled set and the selections of
an uninterrupted run with the same seed, no id twice and only pool ids.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from rel_helpers import assert_same_run, cli_env, read_state, run_job

from raydal.data.shards import load_manifest, read_ids

pytestmark = pytest.mark.reliability

#: Every fault point of one run, in the order a run reaches them; each entry kills the job that
#: resumed after the previous kill (``@N``: the N-th time that process reaches the point).
FULL_CHAIN = [
    "init:start",
    "save:mid",
    "label:start",
    "save:start",
    "train:start",
    "train:mid",
    "train:end",
    "evaluate:val",
    "evaluate:test",
    "save:end",
    "score:start",
    "score:end",
    "select:end",
    "save:mid",
    "label:start",
    "save:start@2",
    "train:mid",
    "save:end@2",
]
#: The default suite's share: mid-training, between scoring and saving, a half-written state file.
QUICK_CHAIN = ["train:mid", "select:end", "save:mid"]


def _walk(chain: list[str], shards, state_dir, pool: set[str]) -> None:
    for n, point in enumerate(chain):
        killed = run_job(shards, state_dir, fault=point)
        assert killed.returncode == -signal.SIGKILL, (
            f"fault {point} (kill #{n + 1}) was not reached: rc {killed.returncode}\n{killed.stdout}{killed.stderr}"
        )
        if n:
            assert "resuming" in killed.stdout, killed.stdout
        survived = read_state(state_dir)  # a complete state is on disk after every kill
        labeled = set(survived["labeled"])
        pending = set((survived.get("pending") or {}).get("ids", []))
        assert labeled <= pool and pending <= pool and not labeled & pending


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param(QUICK_CHAIN, id="quick"),
        pytest.param(FULL_CHAIN, id="every-point", marks=pytest.mark.slow),
    ],
)
def test_kill_at_fault_points_then_resume(chain, reference_run, tiny_shards, tmp_path):
    reached = set(reference_run["points"])
    assert {p.split("@")[0] for p in chain} <= reached, "a fault point is not on the job's code path"
    pool = set(read_ids(load_manifest(tiny_shards), "pool"))
    state_dir = tmp_path / "state"
    _walk(chain, tiny_shards, state_dir, pool)
    done = run_job(tiny_shards, state_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout
    assert not list(state_dir.glob(".state.json.*.tmp")), "a half-written temp file was left behind"
    assert_same_run(read_state(state_dir), reference_run["state"], pool)


def test_every_loop_phase_has_fault_points(reference_run):
    """The points docs/service.md lists are the ones a run reaches (train, evaluate, score, select, save)."""
    expected = {
        "init:start",
        "label:start",
        "train:start",
        "train:mid",
        "train:end",
        "evaluate:val",
        "evaluate:test",
        "score:start",
        "score:end",
        "select:end",
        "save:start",
        "save:mid",
        "save:end",
    }
    assert set(reference_run["points"]) == expected
    assert {p.split("@")[0] for p in FULL_CHAIN} == expected


def test_bad_fault_spec_is_refused():
    bad = subprocess.run(
        [sys.executable, "-c", "from raydal.faults import fault_point; fault_point('train:mid')"],
        env=cli_env(RAYDAL_FAULT="train:mid=explode"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "POINT[@N][=ACTION]" in bad.stderr


def test_pause_once_holds_the_first_process_until_released(tmp_path):
    """``pause-once``: the first process at the point waits for the test's go; any other goes on."""
    from support import fault_env, release, wait_for_marker

    trace = tmp_path / "trace.txt"
    env = cli_env(**fault_env(trace, "score:batch@2=pause-once"))
    script = "from raydal.faults import fault_point; fault_point('score:batch'); fault_point('score:batch')"

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)

    first = start()
    try:
        assert wait_for_marker(trace, "score:batch", timeout=120, alive=lambda: first.poll() is None) == first.pid
        second = start()
        assert second.wait(timeout=120) == 0, second.stderr.read()  # the marker is taken: it goes on
        assert first.poll() is None  # still held at its 2nd score:batch
        release(trace, "score:batch")
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert [line.split()[:2] for line in trace.read_text().splitlines()].count(["score:batch", str(first.pid)]) == 2
