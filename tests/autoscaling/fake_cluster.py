"""Ray's fake multi-node autoscaler on this machine, shaped like ``cluster.yaml``.

``fake_autoscaling_config`` turns ``cluster.yaml`` into a config for Ray's
fake multi-node provider (``fake_provider.NamedHeadFakeProvider``): the same node
type names, CPUs scaled down, GPUs replaced by a custom resource. ``FakeCluster`` starts a head with it
(``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config``) on its own ports
and temp dir, and stops every process it started by PID: never ``ray stop``, nor
``ray.cluster_utils.AutoscalingCluster`` (both stop every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The node id of the fake provider's head (``FAKE_HEAD_NODE_ID`` in Ray's fake_multi_node).
FAKE_HEAD_NODE_ID = "f" * 51 + "00000"

#: The custom resource that stands in for ``GPU`` on fake nodes (this machine has none).
FAKE_GPU = "fake_gpu"

#: The keys Ray's autoscaler reads even when the fake provider ignores them: without
#: ``file_mounts`` the monitor dies with KeyError (/work/shared/docs/ray-notes.md).
_EMPTY_KEYS: dict[str, Any] = dict(
    file_mounts={},
    cluster_synced_files=[],
    file_mounts_sync_continuously=False,
    rsync_exclude=[],
    rsync_filter=[],
    initialization_commands=[],
    setup_commands=[],
    head_setup_commands=[],
    worker_setup_commands=[],
    head_start_ray_commands=[],
    worker_start_ray_commands=[],
)


def fake_autoscaling_config(
    cluster_yaml: str | os.PathLike,
    gcs_port: int,
    *,
    worker_cpus: int = 1,
    max_workers: int = 2,
    idle_timeout_minutes: float = 0.25,
) -> dict[str, Any]:
    """The autoscaling config of ``cluster_yaml`` for Ray's fake multi-node provider.

    Node types keep their names; each worker type gets ``worker_cpus`` CPUs, its GPUs
    become ``FAKE_GPU``, and at most ``max_workers`` nodes; the head gets no CPU, so
    every training worker needs a worker node that the autoscaler must launch.
    """
    source = yaml.safe_load(Path(cluster_yaml).read_text())
    head = source["head_node_type"]
    node_types = {}
    for name, node in source["available_node_types"].items():
        if name == head:
            scaled = {"CPU": 0}
            limits = dict(min_workers=0, max_workers=0)
        else:
            scaled = {"CPU": worker_cpus}
            if node["resources"].get("GPU"):
                scaled[FAKE_GPU] = node["resources"]["GPU"]
            limits = dict(min_workers=node.get("min_workers", 0), max_workers=min(node["max_workers"], max_workers))
        node_types[name] = dict(node_config={}, resources=scaled, **limits)
    return dict(
        cluster_name=f"{source['cluster_name']}-fake",
        max_workers=min(source["max_workers"], max_workers),
        upscaling_speed=source.get("upscaling_speed", 1.0),
        idle_timeout_minutes=idle_timeout_minutes,
        provider=dict(
            type="external",
            module="fake_provider.NamedHeadFakeProvider",
            head_node_type=head,
            use_node_id_as_ip=True,
            disable_node_updaters=True,
            disable_launch_config_check=True,
            gcs_address=f"127.0.0.1:{gcs_port}",
        ),
        auth=dict(ssh_user=source.get("auth", {}).get("ssh_user", "ubuntu")),
        head_node_type=head,
        available_node_types=node_types,
        **_EMPTY_KEYS,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeCluster:
    """A head with the fake autoscaler; ``start()``, then ``stop()`` (kills by PID, removes ``temp``)."""

    cluster_yaml: Path
    temp: Path
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    #: Seconds between autoscaler updates, and without a raylet heartbeat before a worker
    #: node counts as lost (Ray's defaults: 5 s and 30 s).
    update_interval_s: int = 1
    heartbeat_timeout_s: int = 10
    config_options: dict[str, Any] = field(default_factory=dict)

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def job_address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def monitor_log(self) -> Path:
        return self.temp / "session_latest" / "logs" / "monitor.log"

    def start(self) -> None:
        ray_bin = Path(sys.executable).with_name("ray")
        self.temp.mkdir(parents=True, exist_ok=True)
        self.config = fake_autoscaling_config(self.cluster_yaml, self.gcs_port, **self.config_options)
        config_file = self.temp / "autoscaling.yaml"
        config_file.write_text(yaml.safe_dump(self.config))
        # Token auth stays on: RAY_AUTH_MODE=token and the suite's token (tests/conftest.py).
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_FAKE_CLUSTER": "1",
            # every node on 127.0.0.1 (Ray 2.60 swaps it for the machine address otherwise)
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
            "AUTOSCALER_UPDATE_INTERVAL_S": str(self.update_interval_s),
            "AUTOSCALER_HEARTBEAT_TIMEOUT_S": str(self.heartbeat_timeout_s),
            # Ray Train's placement-group cleaner finds the State API here, not by guessing
            # among the Ray instances of this machine ("Found multiple active Ray instances")
            "RAY_API_SERVER_ADDRESS": self.job_address,
            # the GCS marks a killed raylet's node dead after ~3 s instead of ~15-30 s
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }
        done = subprocess.run(
            [
                str(ray_bin),
                "start",
                "--head",
                f"--port={self.gcs_port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=0",
                f"--autoscaling-config={config_file}",
                f"--temp-dir={self.temp}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
                "--disable-usage-stats",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{done.stdout}\n{done.stderr}")

    def processes(self) -> list:
        """Every live process of this cluster: each carries ``temp`` in its command line."""
        psutil = load_psutil()
        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(str(self.temp) in part for part in proc.info["cmdline"] or []):
                mine.append(proc)
        return mine

    def stop(self) -> None:
        """Kill this cluster's processes (and their children) by PID; remove ``temp``."""
        psutil = load_psutil()
        mine = []
        for proc in self.processes():
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
        shutil.rmtree(self.temp, ignore_errors=True)

    @property
    def head_node_id(self) -> str:
        """Ray's fake provider gives the head the node id ``fff...f00000``; workers count up from it."""
        return FAKE_HEAD_NODE_ID

    def nodes(self) -> list[dict[str, Any]]:
        """The GCS's nodes: ``node_id``, ``alive`` and ``resources`` (totals), like ``ray.nodes()``."""
        import ray._raylet

        client = ray._raylet.GcsClient(address=self.gcs_address)
        return [
            dict(node_id=info.node_id.hex(), alive=info.state == 0, resources=dict(info.resources_total))
            for info in client.get_all_node_info(timeout=10).values()
        ]

    def worker_raylet_pids(self) -> dict[str, int]:
        """The live worker nodes' raylets: node id -> PID."""
        pids = {}
        for proc in self.processes():
            cmd = proc.info["cmdline"] or []
            node_id = next((c.split("=", 1)[1] for c in cmd if c.startswith("--node_id=")), None)
            if cmd and Path(cmd[0]).name == "raylet" and node_id and node_id != self.head_node_id:
                pids[node_id] = proc.pid
        return pids

    def autoscaler_events(self) -> list[str]:
        """monitor.log's launch and termination lines: "Adding 1 node(s) of type worker_gpu.",
        "Terminating the node with id ... (idle)", ..."""
        if not self.monitor_log.exists():
            return []
        keep = (":event_summary:", "Terminating the node")
        return [
            line.split(" -- ", 1)[-1]
            for line in self.monitor_log.read_text().splitlines()
            if any(k in line for k in keep)
        ]

    def diagnose(self) -> str:
        """The GCS's nodes and the autoscaler's last status (monitor.log's tail), for failure messages."""
        try:
            nodes = "\n".join(f"  {n['node_id'][-5:]} alive={n['alive']} {n['resources']}" for n in self.nodes())
        except Exception as err:  # noqa: BLE001 - a failure message must not fail
            nodes = f"  (GCS unreachable: {err})"
        monitor = self.monitor_log.read_text()[-4000:] if self.monitor_log.exists() else "(no monitor.log)"
        return f"GCS nodes:\n{nodes}\nmonitor.log (tail):\n{monitor}"


def load_psutil():
    import psutil
    import ray  # noqa: F401  (puts Ray's bundled psutil on sys.path)

    return psutil
