"""Two processes on one state dir: the second is refused at once, naming the holder; a killed
holder never leaves the state dir locked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from rel_helpers import ROOT, RUN_ARGS, cli_env, raydal_cli, run_job
from support import wait_for_point

from raydal.al.state import LOCK_FILE, StateStore
from raydal.exceptions import StateLockedError

pytestmark = pytest.mark.reliability


def test_second_run_and_import_are_refused_while_a_job_runs(tiny_shards, tmp_path):
    state_dir, trace = tmp_path / "state", tmp_path / "trace.txt"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raydal.cli",
            "run",
            "ucmerced",
            "--shards-dir",
            str(tiny_shards),
            "--state-dir",
            str(state_dir),
            *RUN_ARGS,
        ],
        env=cli_env(RAYDAL_FAULT="train:mid=hang", RAYDAL_FAULT_TRACE=str(trace)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_point(
            trace, "train:mid", timeout=300, alive=lambda: holder.poll() is None
        )  # the job holds the state dir, mid-training
        before = (state_dir / "state.json").read_bytes()

        second = run_job(tiny_shards, state_dir, timeout=300)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "is in use by another raydal process" in second.stderr
        for fact in (f"pid {holder.pid}", f"host {os.uname().nodename}", "started 20", "raydal/cli.py run ucmerced"):
            assert fact in second.stderr, second.stderr

        labels = tmp_path / "labels.csv"
        labels.write_text("id,labels\n")
        imported = raydal_cli("import-labels", str(state_dir), str(labels), timeout=300)
        assert imported.returncode == 2 and f"pid {holder.pid}" in imported.stderr, imported.stderr

        with pytest.raises(StateLockedError) as err:  # in process too, with the holder as data
            with StateStore(str(state_dir)).lock("test"):
                pass
        assert err.value.holder["pid"] == holder.pid
        assert (state_dir / "state.json").read_bytes() == before  # the refused ones wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)

    # The holder died without cleaning up: its note is still in the lock file, the lock is not.
    assert json.loads((state_dir / LOCK_FILE).read_text())["pid"] == holder.pid
    store = StateStore(str(state_dir))
    with store.lock("after the crash"):
        assert json.loads((state_dir / LOCK_FILE).read_text())["command"] == "after the crash"
        assert store.load().phase == "train"
    assert not (state_dir / LOCK_FILE).exists()  # released: no lock file between runs


def test_lock_is_reentrant_and_exclusive_within_a_process(tmp_path):
    a, b = StateStore(str(tmp_path)), StateStore(str(tmp_path))
    with a.lock("outer"):
        with a.lock("inner"):  # the same store: re-entrant
            with pytest.raises(StateLockedError, match="outer"):
                with b.lock("other"):
                    pass
    with b.lock("other"):  # released by a
        pass
