"""Shared fixtures: tiny generated archives, prepared shards, a local Ray cluster."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if "RAY_AUTH_MODE" not in os.environ:
    # Ray's token authentication stays on, as on a real cluster: every Ray the suite starts
    # (ray.init, `ray start`, cluster_utils) and every client (the driver, `ray job submit`) uses
    # this session's own token, so no test reads or writes ~/.ray/auth_token.
    _token = Path(tempfile.mkdtemp(prefix="raydal-test-auth-")) / "auth_token"
    _token.write_text(secrets.token_hex(32))
    _token.chmod(0o600)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(_token)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    """A fake UCMerced archive: 120 images of 32x32, learnable labels."""
    from raydal.data.synth import synthesize

    root = tmp_path_factory.mktemp("ucm_archive")
    synthesize("ucmerced", root, n=120, size=32, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_shards(tiny_archive, tmp_path_factory) -> Path:
    """The fake UCMerced archive prepared into Parquet shards at 32x32."""
    from raydal.data.shards import prepare

    out = tmp_path_factory.mktemp("ucm_shards") / "shards"
    prepare("ucmerced", tiny_archive, out, size=32, seed=0, shard_size=32)
    return out


@pytest.fixture(scope="module")
def manifest(tiny_shards):
    """The tiny shards' manifest."""
    from raydal.data.shards import load_manifest

    return load_manifest(tiny_shards)


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU local Ray started once per test module."""
    pytest.importorskip("ray")
    from support import local_ray

    with local_ray() as ray:
        yield ray


@pytest.fixture(scope="module")
def ray_faults(request, tmp_path_factory):
    """A 2-CPU local Ray (once per test module) whose tasks and actors trace every fault point and
    arm the module's ``FAULTS`` (``RAYDAL_FAULT``, e.g. ``"train:epoch@4=pause-once"``); yields the trace file."""
    pytest.importorskip("ray")
    from support import fault_env, local_ray

    trace = tmp_path_factory.mktemp("faults") / "trace.txt"
    with local_ray(fault_env(trace, request.module.FAULTS)):
        yield trace
