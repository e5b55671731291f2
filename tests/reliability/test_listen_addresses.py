"""Every socket an embedded raydal Ray listens on is on loopback: dashboard, job server, agents,
metrics, and (with the node address pinned to 127.0.0.1) Ray's core gRPC ports too."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile

import pytest
from rel_helpers import ROOT, cli_env

pytestmark = [pytest.mark.reliability, pytest.mark.ray]

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

#: Starts raydal's embedded Ray, runs a task (so worker processes exist), then lists the listening
#: TCP sockets of this process and every process it started.
PROBE = """
import json, ray, psutil
from raydal.distributed.session import ensure_ray
assert ensure_ray(num_cpus=2) == "embedded"
assert ray.get(ray.remote(lambda: 1).remote()) == 1
me = psutil.Process()
found = []
for p in [me] + me.children(recursive=True):
    try:
        found += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
print("LISTENING " + json.dumps({"sockets": found, "dashboard": ray._private.worker.get_dashboard_url()}))
"""


def test_embedded_ray_listens_on_loopback_only():
    temp = tempfile.mkdtemp(prefix="rdl-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE],
            env=cli_env(RAYDAL_RAY_TMPDIR=temp),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LISTENING "))
    report = json.loads(line.removeprefix("LISTENING "))
    sockets = report["sockets"]
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names and any("DashboardAgent" in n for n in names), sockets
    dash_host, dash_port = report["dashboard"].rsplit(":", 1)
    assert dash_host == "127.0.0.1" and int(dash_port) in {port for _, _, port in sockets}
    exposed = [s for s in sockets if s[1] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
