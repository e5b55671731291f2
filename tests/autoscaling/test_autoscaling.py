"""An AL job on an autoscaling cluster: Ray's fake multi-node autoscaler, node types from cluster.yaml.

The head has no CPU, so the job's Ray Train workers and Ray Data scoring actors can
only run on ``worker_gpu`` nodes, which the autoscaler launches on demand (1 CPU and
1 ``fake_gpu`` each here, 8 CPUs and 1 GPU in cluster.yaml). ``jobs/al_bigearthnet.py``
is submitted with ``ray job submit`` (token auth on); while it runs, one worker node is
removed by killing its raylet, and the job must still succeed with the run it would
have had. After the job, the idle worker nodes must go. Two placements of the pool
scoring (``--score-workers``):

- 0: in the Train workers after training. The node removed is the one whose train
  worker is in its first scoring batch (the ``score:batch`` fault point of the
  in-worker scoring loop); Ray Train restarts the worker group from the last epoch's
  checkpoint on a node the autoscaler launches, which evaluates and scores again.
- 1: on a Ray Data actor of its own. The node removed is the one whose scoring actor
  is in its first batch; Ray Data restarts the actor and retries the batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_cluster import FAKE_GPU, FakeCluster, load_psutil
from support import fault_env, wait_for_marker, wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.autoscaling, pytest.mark.ray]

IDLE_TIMEOUT_MINUTES = 0.25

#: The job: 2 fits of 1 epoch (10, then 15 labeled) of a tiny CNN on 16x16 BigEarthNet-shaped rows.
JOB_ARGS = (
    "--executor",
    "ray",
    "--strategy",
    "mge",
    "--backbone",
    "smallcnn",
    "--epochs",
    "1",
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
    "1",
    "--cpus-per-worker",
    "1",
    "--no-report",
)


class _NodeWatcher:
    """Samples the GCS's view of the cluster every ``every`` seconds in a thread."""

    def __init__(self, cluster: FakeCluster, every: float = 1.0):
        self.cluster, self.every = cluster, every
        self.samples: list[tuple[float, dict[str, dict]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), {n["node_id"]: n for n in self.cluster.nodes()}))
            except Exception:  # noqa: BLE001 - a missed sample is fine; the next one counts
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def alive_workers_at(self, when: float) -> set[str]:
        """The worker nodes alive in the last sample taken before ``when``."""
        before = [nodes for t, nodes in self.samples if t <= when]
        return {i for i, n in (before[-1] if before else {}).items() if n["alive"] and i != self.cluster.head_node_id}

    def worker_nodes_seen(self) -> dict[str, tuple[float, dict]]:
        """Worker node id -> (when first seen alive, its node record)."""
        seen: dict[str, tuple[float, dict]] = {}
        for t, nodes in self.samples:
            for node_id, node in nodes.items():
                if node["alive"] and node_id != self.cluster.head_node_id and node_id not in seen:
                    seen[node_id] = (t, node)
        return seen


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    if not Path(sys.executable).with_name("ray").exists():
        pytest.skip("the ray CLI is not installed next to this Python")
    fake = FakeCluster(
        ROOT / "cluster.yaml",
        Path("/tmp") / f"raydal-autoscale-{os.getpid()}",
        config_options=dict(worker_cpus=1, max_workers=2, idle_timeout_minutes=IDLE_TIMEOUT_MINUTES),
    )
    try:
        fake.start()
        yield fake
    finally:
        fake.stop()  # by PID: never `ray stop`, which would stop every Ray on the machine


@pytest.fixture(scope="module")
def ben_shards(tmp_path_factory) -> Path:
    """A fake BigEarthNet archive (160 images) prepared at 16x16: the job only reads them."""
    from raydal.data.shards import prepare
    from raydal.data.synth import synthesize

    base = tmp_path_factory.mktemp("ben")
    archive = synthesize("bigearthnet", base / "archive", n=160, size=18, seed=0)
    prepare("bigearthnet", archive, base / "shards", size=16, seed=0, shard_size=32)
    return base / "shards"


@pytest.fixture
def submit(cluster):
    """``submit(args, env_vars, log)``: ``ray job submit`` of ``jobs/al_bigearthnet.py ARGS`` (it waits
    for the job and streams its log into ``log``), submitted again while the head's job agent is not
    registered yet. A client still running at teardown is killed by PID."""
    started: list[subprocess.Popen] = []

    def run(args: list[str], env_vars: dict[str, str], log: Path) -> subprocess.Popen:
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "job",
            "submit",
            "--address",
            cluster.job_address,
            "--working-dir",
            str(ROOT),
            "--runtime-env-json",
            json.dumps({"env_vars": env_vars}),
            "--",
            sys.executable,
            "jobs/al_bigearthnet.py",
            *args,
        ]
        for _ in range(12):
            with log.open("w") as out:
                proc = subprocess.Popen(cmd, env=cluster.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            started.append(proc)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                return proc  # submitted: the job is running
            if "No available agent to submit job" not in log.read_text():
                return proc  # finished (or failed) within 20 s: the caller reads the log
            time.sleep(5)
        raise AssertionError(f"the job server never accepted the job:\n{log.read_text()}")

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _raylet_of(pid: int) -> int:
    """The PID of the raylet that started process ``pid`` (a Ray worker's parent)."""
    proc = load_psutil().Process(pid)
    while proc is not None and not proc.name().startswith("raylet"):
        proc = proc.parent()
    assert proc is not None, f"process {pid} was not started by a raylet"
    return proc.pid


@pytest.mark.parametrize(
    ("score_workers", "fault", "hung_in"),
    [
        (0, "score:batch", "RayTrainWorker"),  # scoring in the Train workers: removed mid-scoring
        (1, "score:batch", "MapWorker"),  # scoring on a Ray Data actor: removed mid-scoring
    ],
    ids=["score-in-train-workers", "score-on-ray-data"],
)
def test_al_job_scales_out_survives_a_node_loss_and_scales_in(
    cluster, ben_shards, submit, tmp_path, score_workers, fault, hung_in
):
    state_dir, trace, log = tmp_path / "state", tmp_path / "trace.txt", tmp_path / "job.log"
    assert [n for n in cluster.nodes() if n["alive"]] == [
        n for n in cluster.nodes() if n["node_id"] == cluster.head_node_id
    ]  # only the head, no CPU
    # The first process to reach the fault point hangs there and its node is then removed;
    # the retries and every later pass go on (hang-once).
    env_vars = fault_env(trace, f"{fault}=hang-once")
    seen_events = len(cluster.autoscaler_events())
    submitted = time.time()
    with _NodeWatcher(cluster) as watcher:
        job = submit(
            [
                "--shards-dir",
                str(ben_shards),
                "--state-dir",
                str(state_dir),
                *JOB_ARGS,
                "--score-workers",
                str(score_workers),
            ],
            env_vars,
            log,
        )
        hung = wait_for_marker(
            trace,
            fault,
            300,
            alive=lambda: job.poll() is None,
            diagnose=lambda: f"{cluster.diagnose()}\njob log (tail):\n{log.read_text()[-6000:]}",
        )
        assert hung_in in " ".join(load_psutil().Process(hung).cmdline())
        raylet = _raylet_of(hung)
        victim = {pid: node_id for node_id, pid in cluster.worker_raylet_pids().items()}.get(raylet)
        assert victim is not None, f"process {hung} does not run on a worker node"
        os.kill(raylet, signal.SIGKILL)  # the node is gone: its raylet, and with it its workers
        killed = time.time()
        job.wait(timeout=420)
        finished = time.time()
        out = log.read_text()

        # --- the job waited for nodes (submitted to a cluster without a CPU, it got the
        # autoscaler's launches in its log), survived the loss, and finished its run
        assert job.returncode == 0, out[-6000:]
        assert "succeeded" in out
        assert "Adding 1 node(s) of type worker_gpu" in out
        assert "iter 1: 15 labeled" in out
        state = json.loads((state_dir / "state.json").read_text())
        assert state["phase"] == "done"
        assert [h["n_labeled"] for h in state["history"]] == [10, 15]
        assert len(state["labeled"]) == 15 and len(state["history"][0]["selected"]) == 5

        # --- worker nodes of cluster.yaml's worker type were launched on demand, after the submit
        launched = watcher.worker_nodes_seen()
        assert victim in launched
        assert len(launched) >= 2, launched  # the first, and the scoring's or the removed one's replacement
        for first_seen, node in launched.values():
            assert submitted < first_seen
            assert node["resources"]["CPU"] == 1 and node["resources"][FAKE_GPU] == 1
        # the rest of the job ran on the other worker nodes, or on one launched after the loss
        others = watcher.alive_workers_at(killed) - {victim}
        if not others:
            assert any(killed < first_seen < finished for first_seen, _ in launched.values()), (
                "the only worker node was removed and no worker node came up after it"
            )
        events = cluster.autoscaler_events()[seen_events:]
        assert sum("Adding 1 node(s) of type worker_gpu" in e for e in events) >= 2, events
        # the removed node left the provider too (as "lost contact with raylet" or, with nothing
        # running on it, as idle), so it no longer counts against max_workers
        assert any(victim in e and "Terminating the node" in e for e in events), events

        # --- idle: every worker node is gone within the idle timeout (plus the autoscaler's lag):
        # dead in the GCS, its raylet process ended
        def scaled_in():
            alive = [n for n in cluster.nodes() if n["alive"] and n["node_id"] != cluster.head_node_id]
            return not alive and not cluster.worker_raylet_pids()

        wait_until(
            scaled_in,
            "the idle worker nodes to be removed",
            60 * IDLE_TIMEOUT_MINUTES + 60,
            diagnose=cluster.diagnose,
            every=1.0,
        )
    events = cluster.autoscaler_events()[seen_events:]
    assert any("Removing" in e and "worker_gpu (idle)" in e for e in events), events
