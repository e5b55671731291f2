"""The query-side benchmarks at their smallest size, so the scripts cannot rot."""

from __future__ import annotations

import pytest
from support import load_benchmark


def test_gpu_query_small_runs_on_cpu_from_shards(tmp_path):
    res = load_benchmark("gpu_query").main(
        ["--small", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "shards")]
    )
    assert (tmp_path / "out" / "gpu_query.json").exists()
    assert [q["strategy"] for q in res["query"]] == ["ll+clustering", "mge+clustering", "tpd+clustering"]
    assert all(q["candidates"] == 4 * 10 for q in res["query"])
    assert res["read_decode_images_per_s"] > 0


@pytest.mark.slow
@pytest.mark.ray
def test_bench_driver_memory_small(tmp_path):
    res = load_benchmark("bench_driver_memory").main(["--small", "--workdir", str(tmp_path)])
    assert [q["rows_scored"] for q in res["queries"]] == [20_000 - 1000] * 2
    assert all(q["peak_rss_mib"] >= q["rss_before_mib"] > 0 for q in res["queries"])  # (pytest itself imports torch)


@pytest.mark.slow
@pytest.mark.ray
def test_bench_scaling_small_scoring(tmp_path):
    res = load_benchmark("bench_scaling").main(["--small", "--workers", "", "--workdir", str(tmp_path)])
    assert [r["workers"] for r in res["scoring"]["rows"]] == [1, 2]
    assert all(r["same_candidates"] for r in res["scoring"]["rows"])
