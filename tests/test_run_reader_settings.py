"""``raydal run --data-root`` takes the reader's settings (issue 16): raydal prepare's reader flags,
or a ``reader:`` mapping in a --config file, reach the reader when the run prepares its shards."""

import json

import pytest
import yaml

import raydal.al.experiment
from raydal.al.experiment import ensure_shards
from raydal.cli import main as cli
from raydal.config import ExperimentConfig, config_sources, resolve_config
from raydal.data.synth import synthesize
from raydal.data.treesatai import TreeSatAISettings
from raydal.exceptions import ConfigError
from raydal.settings import declared_default


def _resolved(capsys, *argv):
    assert cli(["run", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


def test_run_flags_and_config_file_give_the_reader_settings(tmp_path, capsys):
    out = _resolved(capsys, "treesatai", "--threshold", "0.2", "--band-order", "NIR,R,G,B")
    assert "  threshold: 0.2  # flag" in out.splitlines()
    data = yaml.safe_load(out)
    assert data["reader"] == {"threshold": 0.2, "band_order": ["NIR", "R", "G", "B"]}
    # the printed config loads back; a flag overrides the file's setting, the file's other setting stays
    path = tmp_path / "c.yaml"
    path.write_text(out)
    exp = resolve_config("treesatai", config_file=path, overrides={"reader": {"threshold": 0.3}})
    assert exp.reader == {"threshold": 0.3, "band_order": ["NIR", "R", "G", "B"]}
    sources = config_sources("treesatai", config_file=path, overrides={"reader": {"threshold": 0.3}})
    assert sources["reader.threshold"] == "flag" and sources["reader.band_order"] == "file"
    # none given: the reader's declared defaults apply (nothing handed on)
    assert yaml.safe_load(_resolved(capsys, "treesatai"))["reader"] == {}


def test_reader_settings_are_checked_before_anything_runs(tmp_path, capsys):
    # another reader's flag
    assert cli(["run", "ucmerced", "--threshold", "0.2", "--state-dir", str(tmp_path / "st")]) == 2
    assert "['threshold'] are not settings of the ucmerced reader" in capsys.readouterr().err
    # a value out of the reader's range, in the one message form
    with pytest.raises(ConfigError, match=r"^The 'threshold' parameter of TreeSatAIReader must be a float in \[0, 1\)"):
        resolve_config("treesatai", overrides={"reader": {"threshold": 1.5}})
    with pytest.raises(ConfigError, match=r"Unknown parameter\(s\) \['thresh'\] of TreeSatAIReader"):
        resolve_config("treesatai", overrides={"reader": {"thresh": 0.1}})
    with pytest.raises(ConfigError, match="The ucmerced reader has no settings"):
        resolve_config("ucmerced", overrides={"reader": {"threshold": 0.1}})
    assert not (tmp_path / "st").exists()


def test_run_hands_the_reader_settings_to_prepare(tmp_path, capsys, monkeypatch):
    """The CLI passes ``reader`` to ensure_shards, which prepares with it (the manifest records it)."""
    archive = synthesize("treesatai", tmp_path / "archive", n=40, size=24, seed=1)
    seen = {}
    real = ensure_shards

    def spy(*args, **kwargs):
        seen.update(kwargs)
        real(*args, **kwargs)
        raise ConfigError("stopped by the test after preparing")

    monkeypatch.setattr(raydal.al.experiment, "ensure_shards", spy)
    shards = tmp_path / "shards"
    argv = ["run", "treesatai", "--data-root", str(archive), "--shards-dir", str(shards), "--size", "16"]
    assert cli([*argv, "--threshold", "0.3", "--band-order", "nir-rgb", "--state-dir", str(tmp_path / "st")]) == 2
    assert seen["reader"] == {"threshold": 0.3, "band_order": "nir-rgb"}
    recorded = json.loads((shards / "manifest.json").read_text())["reader_settings"]
    assert recorded == {"threshold": 0.3, "band_order": ["NIR", "R", "G", "B"]}
    # the same archive with the defaults records the reader's declared defaults: the flags made the difference
    default = tmp_path / "shards-default"
    ensure_shards("treesatai", default, archive, 16, None, seed=0, log=lambda _: None)
    declared = declared_default(TreeSatAISettings, "threshold")
    assert json.loads((default / "manifest.json").read_text())["reader_settings"]["threshold"] == declared
    # prepared shards are reused as they are, and the log says so with both settings
    lines = []
    ensure_shards("treesatai", default, archive, 16, None, seed=0, log=lines.append, reader={"threshold": 0.3})
    assert "'threshold': 0.3" in lines[-1] and f"'threshold': {declared}" in lines[-1] and "remove" in lines[-1]


def test_experiment_config_reader_defaults_to_no_settings():
    exp = ExperimentConfig.from_dict({"dataset": "treesatai", "shards_dir": "s"})
    assert exp.reader == {} and exp.to_dict()["reader"] == {}
