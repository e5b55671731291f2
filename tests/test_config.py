import pytest

from raydal.config import ALConfig
from raydal.exceptions import ConfigError


def test_validation_names_parameter_and_value():
    with pytest.raises(ConfigError, match=r"'b' parameter of ALConfig must be an int >= 1. Got 0"):
        ALConfig(shards_dir="s", b=0)
    with pytest.raises(ConfigError, match="mode"):
        ALConfig(shards_dir="s", mode="interactive")
    with pytest.raises(ConfigError, match="never ends"):
        ALConfig(shards_dir="s", iterations=None, label_budget=None)
    with pytest.raises(ConfigError, match="label_budget"):
        ALConfig(shards_dir="s", initial_labeled=40, label_budget=10, iterations=None)


def test_yaml_round_trip_and_unknown_field(tmp_path):
    cfg = ALConfig(shards_dir="s", b=7, train={"epochs": 3})
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert ALConfig.from_yaml(path) == cfg
    path.write_text("b: 3\nshards_dir: s\nbudget: 9\n")
    with pytest.raises(ConfigError, match="Unknown ALConfig field.*budget"):
        ALConfig.from_yaml(path)


def test_fingerprint_ignores_execution_fields():
    a = ALConfig(shards_dir="s", executor="ray", num_workers=4)
    b = ALConfig(shards_dir="s", executor="local", num_workers=1, iterations=9)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != ALConfig(shards_dir="s", strategy="ll+clustering").fingerprint()
