"""Fixtures of the reliability suite (helpers live in rel_helpers.py)."""

from __future__ import annotations

import pytest

from rel_helpers import read_state, run_job


@pytest.fixture(scope="session")
def reference_run(tiny_shards, tmp_path_factory) -> dict:
    """The uninterrupted run every faulted run must end equal to; ``trace``: points it reached."""
    state_dir = tmp_path_factory.mktemp("reference") / "state"
    trace = state_dir.parent / "trace.txt"
    done = run_job(tiny_shards, state_dir, trace=trace)
    assert done.returncode == 0, done.stdout + done.stderr
    points = [line.split()[0] for line in trace.read_text().splitlines()]
    return {"state": read_state(state_dir), "points": points, "state_dir": state_dir}
