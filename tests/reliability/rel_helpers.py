"""Helpers of the reliability suite: the `raydal` CLI in a subprocess, with fault injection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A tiny AL run: smallcnn, 1 epoch, 2 query rounds of 5 on the 120-image fake archive.
RUN_ARGS = (
    "--executor",
    "local",
    "--strategy",
    "mge+clustering",
    "--backbone",
    "smallcnn",
    "--epochs",
    "1",
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
    "2",
    "--trials",
    "1",
    "--seed",
    "0",
    "--no-report",
)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAYDAL_FAULT", "RAYDAL_FAULT_TRACE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def raydal_cli(
    *args: str, fault: str | None = None, trace: Path | None = None, timeout: int = 600, preexec_fn=None
) -> subprocess.CompletedProcess:
    """``python -m raydal.cli ARGS``; ``fault``: RAYDAL_FAULT, ``trace``: RAYDAL_FAULT_TRACE."""
    extra = {}
    if fault:
        extra["RAYDAL_FAULT"] = fault
    if trace:
        extra["RAYDAL_FAULT_TRACE"] = str(trace)
    return subprocess.run(
        [sys.executable, "-m", "raydal.cli", *args],
        env=cli_env(**extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def run_job(shards: Path, state_dir: Path, **kw) -> subprocess.CompletedProcess:
    return raydal_cli("run", "ucmerced", "--shards-dir", str(shards), "--state-dir", str(state_dir), *RUN_ARGS, **kw)


def read_state(state_dir: Path) -> dict:
    return json.loads((Path(state_dir) / "state.json").read_text())


def assert_same_run(final: dict, reference: dict, pool_ids: set[str]) -> None:
    """Same labeled set (who and when) and selections as the reference; no id twice; only pool ids."""
    assert final["phase"] == reference["phase"] == "done"
    assert final["labeled"] == reference["labeled"]
    assert [h.get("selected") for h in final["history"]] == [h.get("selected") for h in reference["history"]]
    assert [h["n_labeled"] for h in final["history"]] == [10, 15, 20]
    picked = [i for h in final["history"] for i in h.get("selected", [])]
    initial = [i for i, v in final["labeled"].items() if v["by"] == "initial"]
    assert len(picked + initial) == len(set(picked + initial)) == len(final["labeled"])
    assert set(final["labeled"]) <= pool_ids


def node_of(cluster, pid: int):
    """The worker node (``ray._private.node.Node``) whose raylet started the process ``pid``."""
    import psutil

    raylets = {n.all_processes["raylet"][0].process.pid: n for n in cluster.worker_nodes}
    proc = psutil.Process(pid)
    while proc is not None:
        if proc.pid in raylets:
            return raylets[proc.pid]
        proc = proc.parent()
    raise AssertionError(f"process {pid} does not belong to a worker node of the cluster")
