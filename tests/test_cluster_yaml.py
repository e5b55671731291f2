from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_passes_ray_schema_validation():
    pytest.importorskip("ray.autoscaler")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    nodes = config["available_node_types"]
    gpu_workers = [n for n in nodes.values() if n["resources"].get("GPU", 0) > 0]
    assert gpu_workers and all(n["min_workers"] == 0 for n in gpu_workers)
    assert nodes[config["head_node_type"]]["resources"].get("GPU", 0) == 0


def test_cluster_yaml_validation_catches_a_broken_config():
    pytest.importorskip("ray.autoscaler")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["head_node_type"] = "no_such_node"
    with pytest.raises(Exception):
        validate_config(prepare_config(config))
