"""`raydal sweep`: flags become a Tune grid; the results table and trial state dirs appear."""

import json

import pytest

from raydal.cli import main as cli

pytestmark = pytest.mark.ray


def test_cli_sweep_grid_over_b(ray_local, tiny_shards, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    rc = cli(
        [
            "sweep",
            "ucmerced",
            str(sweep),
            "--param",
            "b=4,6",
            "--shards-dir",
            str(tiny_shards),
            "--strategy",
            "mge+clustering",
            "--backbone",
            "smallcnn",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--initial-labeled",
            "10",
            "--iterations",
            "1",
            "--m",
            "2",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "sweep results:" in out
    rows = json.loads((sweep / "sweep.json").read_text())["rows"]
    assert sorted((r["overrides"]["b"], r["n_labeled"]) for r in rows) == [(4, 14), (6, 16)]


def test_cli_sweep_param_errors(tmp_path, capsys):
    base = ["sweep", "ucmerced", str(tmp_path / "s"), "--shards-dir", str(tmp_path)]
    assert cli(base) == 2
    assert "Nothing to sweep" in capsys.readouterr().err
    assert cli(base + ["--param", "b"]) == 2
    assert "KEY=V1,V2" in capsys.readouterr().err
