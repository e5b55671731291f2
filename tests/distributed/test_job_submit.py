"""`ray job submit` against a real local Ray head on loopback, then check the state the job wrote."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` on 127.0.0.1 with the job server; stopped after the module."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the ray CLI is not installed next to this Python")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port, dash, agent = free_port(), free_port(), free_port()
    temp = Path("/tmp") / f"raydal-head-{os.getpid()}"
    # Token authentication on, as docs/security.md's `ray start --head` gets it: RAY_AUTH_MODE=token and
    # the suite's token (tests/conftest.py) for the head and for the clients below.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            "--num-cpus=2",
            f"--dashboard-agent-listen-port={agent}",  # the default 52365 may be taken on a shared machine
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        if start.returncode != 0:
            pytest.fail(f"ray start failed:\n{start.stdout}\n{start.stderr}")
        yield {"address": f"http://127.0.0.1:{dash}", "env": env, "ray": str(ray_bin)}
    finally:
        _stop_head(temp)  # not `ray stop`: it would stop every Ray on the machine
        shutil.rmtree(temp, ignore_errors=True)


def _stop_head(temp: Path) -> None:
    """Kill the processes of the head started with ``--temp-dir=temp`` (and their children)."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(temp) in part for part in proc.info["cmdline"] or []):
            try:
                mine += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    for proc in mine:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(mine, timeout=30)


def test_job_server_refuses_a_client_without_the_token(ray_head, tmp_path):
    """What a user sees who skips docs/security.md's `export RAY_AUTH_MODE=token`: refused."""
    env = {k: v for k, v in ray_head["env"].items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    done = subprocess.run(
        [ray_head["ray"], "job", "list", "--address", ray_head["address"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "Missing authentication token" in done.stdout + done.stderr


def test_job_submit_runs_an_al_experiment(ray_head, tiny_shards, tmp_path):
    state_dir = tmp_path / "state"
    cmd = [
        ray_head["ray"],
        "job",
        "submit",
        "--address",
        ray_head["address"],
        "--working-dir",
        str(ROOT),
        "--",
        sys.executable,
        "jobs/al_ucmerced.py",
        "--executor",
        "ray",
        "--shards-dir",
        str(tiny_shards),
        "--state-dir",
        str(state_dir),
        "--strategy",
        "ll+clustering",
        "--backbone",
        "smallcnn",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--b",
        "5",
        "--m",
        "2",
        "--initial-labeled",
        "10",
        "--iterations",
        "1",
        "--trials",
        "1",
        "--num-workers",
        "2",
        "--cpus-per-worker",
        "0.5",
    ]
    for attempt in range(12):
        done = subprocess.run(cmd, env=ray_head["env"], capture_output=True, text=True, timeout=900, cwd=ROOT)
        # right after `ray start` the head's job agent may not be registered yet; the job was not submitted
        if "No available agent to submit job" not in done.stdout + done.stderr:
            break
        time.sleep(5)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout
    assert "[raydal] iter 1: 15 labeled" in done.stdout  # progress from the driver actor
    state = json.loads((state_dir / "state.json").read_text())
    assert state["phase"] == "done"
    assert [h["n_labeled"] for h in state["history"]] == [10, 15]
    assert len(state["history"][0]["selected"]) == 5
    assert (state_dir / "report" / "f1_curves.png").exists()
    # the checkpoint of every iteration was written by Ray Train and is loadable in process
    from raydal.models import load_checkpoint

    assert load_checkpoint(state["history"][-1]["checkpoint"]).num_classes == 17
