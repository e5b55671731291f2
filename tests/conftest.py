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


#: The modules with a test that uses ``ray_local``: they run one after another and share one Ray.
_SHARED_RAY_MODULES: set[str] = set()
#: The GCS address of the shared Ray while it is up.
_shared_ray: dict[str, str] = {}


def pytest_collection_modifyitems(session, config, items):
    """Move the modules that use ``ray_local`` together, where the first of them was (each module's
    tests stay together and in order): one Ray start for all of them instead of one per module."""
    shared = {item.module.__name__ for item in items if "ray_local" in getattr(item, "fixturenames", ())}
    _SHARED_RAY_MODULES.update(shared)
    first = next((k for k, item in enumerate(items) if item.module.__name__ in shared), None)
    if first is not None:
        items[:] = (
            items[:first]
            + [item for item in items if item.module.__name__ in shared]
            + [item for item in items[first:] if item.module.__name__ not in shared]
        )


def _shared_ray_up() -> bool:
    import sys

    if "ray" not in sys.modules or not _shared_ray:
        return False
    import ray

    return ray.is_initialized() and ray.get_runtime_context().gcs_address == _shared_ray["gcs"]


def _stop_shared_ray() -> None:
    if _shared_ray_up():
        import ray

        ray.shutdown()
    _shared_ray.clear()


def pytest_runtest_setup(item):
    """A module that does not ask for ``ray_local`` never finds the shared Ray running (it may start
    a Ray of its own, e.g. the embedded one, and must not find this one initialised)."""
    if item.module.__name__ not in _SHARED_RAY_MODULES:
        _stop_shared_ray()


def pytest_sessionfinish(session, exitstatus):
    _stop_shared_ray()


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU local Ray shared by the modules that use it (they run one after another: see
    ``pytest_collection_modifyitems``). A module gets it only idle: after each module the warm
    scoring actors are released, and a Ray with a raydal actor left (a driver) or a CPU still taken
    (a worker group not released) is shut down, so the next module starts a fresh one."""
    pytest.importorskip("ray")
    import ray
    from support import start_local_ray, wait_until

    if not _shared_ray_up():
        _stop_shared_ray()
        start_local_ray()
        _shared_ray["gcs"] = ray.get_runtime_context().gcs_address
    yield ray
    if not _shared_ray_up():
        return  # a test shut it down (or started another)
    from raydal.distributed.score import release_scoring_actors

    release_scoring_actors()
    try:
        wait_until(
            lambda: (
                not any(a["name"].startswith("raydal") for a in ray.util.list_named_actors(all_namespaces=True))
                and ray.available_resources().get("CPU") == ray.cluster_resources().get("CPU")
            ),
            "the shared Ray to be idle",
            timeout=5,
        )
    except AssertionError:
        _stop_shared_ray()


@pytest.fixture(scope="module")
def ray_faults(request, tmp_path_factory):
    """A 2-CPU local Ray (once per test module) whose tasks and actors trace every fault point and
    arm the module's ``FAULTS`` (``RAYDAL_FAULT``, e.g. ``"train:epoch@4=pause-once"``); yields the trace file."""
    pytest.importorskip("ray")
    from support import fault_env, local_ray

    trace = tmp_path_factory.mktemp("faults") / "trace.txt"
    with local_ray(fault_env(trace, request.module.FAULTS)):
        yield trace
