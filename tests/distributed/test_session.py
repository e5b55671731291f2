"""raydal.distributed.session's loopback switch: it restores Ray's settings and fails loudly on a Ray
that lacks them (the switch would otherwise do nothing and clusters would leave 127.0.0.1)."""

from __future__ import annotations

import os

import pytest

ray_constants = pytest.importorskip("ray._private.ray_constants")
ray_utils = pytest.importorskip("ray._private.utils")

from raydal.distributed.session import loopback_cluster  # noqa: E402


def test_loopback_cluster_switches_and_restores(monkeypatch):
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    write = ray_utils.write_ray_address
    with loopback_cluster():
        assert ray_constants.ENABLE_RAY_CLUSTER is False
        assert ray_utils.write_ray_address is not write
        assert ray_utils.write_ray_address("10.0.0.1:6379") is None  # nothing written
        assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert ray_constants.ENABLE_RAY_CLUSTER is True
    assert ray_utils.write_ray_address is write
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ


def test_loopback_cluster_restores_after_an_error(monkeypatch):
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    with pytest.raises(KeyError), loopback_cluster():
        raise KeyError("boom")
    assert ray_constants.ENABLE_RAY_CLUSTER is True


@pytest.mark.parametrize(("owner", "attr"), [(ray_constants, "ENABLE_RAY_CLUSTER"), (ray_utils, "write_ray_address")])
def test_a_ray_without_the_switch_fails_loudly(monkeypatch, owner, attr):
    monkeypatch.delattr(owner, attr)
    with pytest.raises(RuntimeError, match=f"{attr}.*Fix: install the Ray version pyproject.toml pins"):
        with loopback_cluster():
            pass


def test_the_embedded_ray_polls_ray_train_workers_often():
    """ensure_ray's embedded Ray hands a 0.25 s Ray Train health-check period to its workers (where
    Ray Train's controller reads it) unless the environment sets one."""
    import subprocess
    import sys

    from raydal.constants import EMBEDDED_HEALTH_CHECK_INTERVAL_S, ENV_RAY_TMPDIR, ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL

    code = (
        "import os, ray\n"
        "from raydal.distributed.session import ensure_ray\n"
        "ensure_ray(num_cpus=1)\n"
        f"get = ray.remote(lambda: os.environ.get({ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL!r}))\n"
        "print('interval', ray.get(get.remote()))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL}
    # its own short temp dir (Ray's socket paths must stay under 108 bytes)
    env.update({ENV_RAY_TMPDIR: f"/tmp/raydal-hc-{os.getpid()}", "RAY_USAGE_STATS_ENABLED": "0"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"interval {EMBEDDED_HEALTH_CHECK_INTERVAL_S}" in done.stdout
