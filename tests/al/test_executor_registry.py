"""Executors come from one registry; the run's clustering backend reaches the strategy they query with."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import raydal.query.diversity
from raydal.al.executor import (
    Executor,
    LocalExecutor,
    executor_class,
    executor_needs_ray,
    get_executor,
    list_executors,
    register_executor,
)
from raydal.al.loop import ActiveLearner
from raydal.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_registry_names_and_lookup(make_config):
    assert {"local", "ray"} <= set(list_executors())
    cfg = make_config()
    assert type(get_executor("local", cfg)) is LocalExecutor
    assert not executor_needs_ray("local") and executor_needs_ray("ray")
    ray_cls = executor_class("ray")
    assert issubclass(ray_cls, Executor) and ray_cls.__name__ == "RayExecutor"
    with pytest.raises(ConfigError, match="Unknown executor 'dask'. Valid names: .*local.*ray"):
        get_executor("dask", cfg)


def test_a_registered_executor_is_a_valid_config_name(make_config):
    @register_executor("local-copy-for-test")
    class Copy(LocalExecutor):
        pass

    try:
        cfg = make_config(executor="local-copy-for-test")
        assert type(get_executor(cfg.executor, cfg)) is Copy
    finally:
        from raydal.al import executor

        del executor._REGISTRY["local-copy-for-test"]


def test_non_ray_code_does_not_import_ray():
    code = "import sys, raydal.al.executor, raydal.al.loop, raydal.config; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_clustering_backend_reaches_the_query(make_config, monkeypatch, backend):
    """The config's clustering_backend is the backend k-means runs with in the executor's query."""
    seen = []
    real = raydal.query.diversity.kmeans

    def spy(*args, **kwargs):
        seen.append(kwargs.get("backend"))
        return real(*args, **kwargs)

    monkeypatch.setattr(raydal.query.diversity, "kmeans", spy)
    cfg = make_config(strategy="mge+clustering", clustering_backend=backend, iterations=1)
    executor = get_executor(cfg.executor, cfg)
    assert executor.strategy.backend == backend
    ActiveLearner(cfg, executor, log=lambda s: None).run()
    assert seen == [backend]
