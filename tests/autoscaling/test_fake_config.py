"""The fake autoscaling config derived from cluster.yaml (no Ray started: runs in the default suite)."""

from pathlib import Path

import pytest
import yaml
from fake_cluster import FAKE_GPU, fake_autoscaling_config

ROOT = Path(__file__).resolve().parents[2]


def test_fake_config_keeps_cluster_yaml_node_types():
    """Same node type names as cluster.yaml; CPUs scaled down; GPU replaced by the custom resource."""
    pytest.importorskip("ray.autoscaler")
    from ray.autoscaler._private.util import prepare_config, validate_config

    source = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config = fake_autoscaling_config(ROOT / "cluster.yaml", gcs_port=6379, worker_cpus=1, max_workers=2)
    validate_config(prepare_config(config))
    assert set(config["available_node_types"]) == set(source["available_node_types"])
    assert config["head_node_type"] == source["head_node_type"] == config["provider"]["head_node_type"]
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0
    for name, node in source["available_node_types"].items():
        if name == source["head_node_type"]:
            continue
        fake = config["available_node_types"][name]
        assert fake["resources"]["CPU"] == 1
        assert "GPU" not in fake["resources"]
        assert fake["resources"].get(FAKE_GPU, 0) == node["resources"].get("GPU", 0)
        assert fake["max_workers"] == min(2, node["max_workers"])
