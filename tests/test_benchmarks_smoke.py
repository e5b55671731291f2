"""Run every benchmark at its smallest size so the scripts cannot rot."""

from __future__ import annotations

import json

import pytest
from support import load_benchmark


def test_bench_clustering_small(tmp_path):
    out = tmp_path / "clustering.json"
    res = load_benchmark("bench_clustering").main(["--small", "--json", str(out)])
    assert out.exists()
    methods = [r["method"] for r in res["rows"]]
    assert (
        methods[0].startswith("sklearn") and any("faiss" in m for m in methods) and any("torch" in m for m in methods)
    )
    for row in res["rows"][1:]:
        assert row["distinct_picks"] == res["k"]
        assert 0.9 < row["inertia_vs_sklearn"] < 1.2  # same problem, comparable optimum


@pytest.mark.ray
def test_bench_scoring_small(ray_local, tmp_path):
    res = load_benchmark("bench_scoring").main(["--small", "--workdir", str(tmp_path / "work")])
    paths = [r["path"] for r in res["results"]]
    assert paths[0] == "plain PyTorch loop" and any("score_pool_ray" in p for p in paths)
    assert all(r["same_candidates"] for r in res["results"] if "same_candidates" in r)
    assert res["paper_table1_a100_s"] == 142.2


@pytest.mark.slow
def test_gpu_session_small_runs_the_real_train_step(tmp_path):
    """DenseNet121 at 32 px on the CPU: minutes on a small box, hence slow."""
    res = load_benchmark("gpu_session").main(["--small", "--out", str(tmp_path)])
    assert (tmp_path / "gpu_results.json").exists()
    assert res["train"][0]["sec_per_step"] > 0 and res["fit"]["epochs"] == 2
    assert {q["strategy"] for q in res["query"]} == {"mge+clustering", "ll+clustering", "tpd+clustering"}


@pytest.mark.slow  # 18 tiny AL trials: ~1 CPU-minute
def test_fidelity_study_small(tmp_path):
    study = load_benchmark("fidelity_study")
    results = tmp_path / "results"
    assert (
        study.main(
            [
                "--size",
                "small",
                "--trials",
                "2",
                "--runs",
                str(tmp_path / "runs"),
                "--results",
                str(results),
                "--no-results-md",
            ]
        )
        == 0
    )
    text = (results / "study.md").read_text()
    for arm in study.arms(study.SIZES["small"]):
        assert f"| {arm} | 2 |" in text  # every arm ran both trials
    rows = json.loads((results / "study.json").read_text())["findings"]
    assert rows and all(r["verdict"].split(" (")[0] in {"holds", "does not hold", "inconclusive"} for r in rows)
    assert all(len(r["d"]) == 2 for r in rows)  # paired over both seeds
    assert (results / "fidelity_curves.png").stat().st_size > 1000
    # a rerun finds every trial done and only rewrites the tables
    assert (
        study.main(
            [
                "--size",
                "small",
                "--trials",
                "2",
                "--runs",
                str(tmp_path / "runs"),
                "--results",
                str(results),
                "--no-results-md",
            ]
        )
        == 0
    )
    md = tmp_path / "RESULTS.md"
    md.write_text("# x\n\n<!-- fidelity-study:small -->\nold\n<!-- /fidelity-study:small -->\n\n## after\n")
    study.update_results_md(text, "small", md)
    assert "\nold\n" not in md.read_text() and "## after" in md.read_text() and "| random | 2 |" in md.read_text()


@pytest.mark.ray
@pytest.mark.slow
def test_bench_train_small(ray_local, tmp_path):
    res = load_benchmark("bench_train").main(["--small", "--workdir", str(tmp_path / "work")])
    assert [r["path"].split()[0] for r in res["rows"]] == ["train_in_process"] * 2 + ["train_with_ray"] * 3
    assert res["rows"][-1]["pool"] == 400 and set(res["summary"]) == {
        "pool_ratio",
        "per_fit_overhead_s",
        "per_epoch_overhead_s",
        "per_epoch_overhead_in_fit_s",
    }


@pytest.mark.ray
@pytest.mark.slow
def test_bench_iteration_small(ray_local, tmp_path):
    res = load_benchmark("bench_iteration").main(["--small", "--workdir", str(tmp_path / "work")])
    assert [r["executor"] for r in res["rows"]] == ["local", "ray"]
    assert all(len(r["iteration_seconds"]) == 1 for r in res["rows"]) and "ray_minus_local_s" in res["summary"]


@pytest.mark.ray
@pytest.mark.slow
def test_bench_bigearthnet_small(tmp_path):
    import ray

    if ray.is_initialized():  # this module's ray_local: the benchmark connects to a cluster of its own
        ray.shutdown()
    res = load_benchmark("bench_bigearthnet").main(
        ["--small", "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json")]
    )
    assert (tmp_path / "r.json").exists() and res["selected"] == 100 and res["n_labeled"] == 100
    assert [s["phase"] for s in res["steps"]] == ["init", "train", "query"]
    assert all(res["phases_seconds"][p] > 0 for p in ("read", "train", "evaluate", "score", "select", "save"))
    reads = res["bytes_read"]
    # the fit reads its labeled rows' row groups, evaluation val and test, scoring the pool
    assert reads["read"]["pool_data"] >= res["targets"]["labeled_rows_bytes"] * 0.9
    assert reads["evaluate"]["val_data"] > 0 and reads["evaluate"]["test_data"] > 0
    assert reads["score"]["pool_data"] > 9_000 * 768
    assert 0 < res["iteration"]["driver_peak_rss_bytes"] < 4 * 10**9
