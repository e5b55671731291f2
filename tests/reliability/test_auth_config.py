"""Token authentication stays on: cluster.yaml gives every node the client's token and starts
Ray with RAY_AUTH_MODE=token; the test suite itself runs with a token."""

from __future__ import annotations

import os

import pytest
import yaml
from rel_helpers import ROOT

pytestmark = pytest.mark.reliability


def test_cluster_yaml_shares_one_token_and_turns_auth_on():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2 and all("RAY_AUTH_MODE=token " in c for c in ray_starts)
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]


def test_suite_runs_with_token_authentication():
    assert os.environ.get("RAY_AUTH_MODE") == "token"
    token = os.environ.get("RAY_AUTH_TOKEN_PATH")
    assert token and os.path.getsize(token) == 64  # the suite's own token, not ~/.ray/auth_token
