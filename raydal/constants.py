"""Environment variables and fixed names, defined once."""

from __future__ import annotations

#: Where ``raydal`` keeps Ray's session folders when it starts an embedded Ray.
ENV_RAY_TMPDIR = "RAYDAL_RAY_TMPDIR"
#: Address of a running Ray cluster; when unset an embedded local Ray is started.
ENV_RAY_ADDRESS = "RAY_ADDRESS"
#: Force the compute device ("cpu", "cuda", "cuda:1"); default: CUDA when present.
ENV_DEVICE = "RAYDAL_DEVICE"

MANIFEST_NAME = "manifest.json"
QUARANTINE_NAME = "quarantine.csv"
SHARD_FORMAT_VERSION = 1
#: Canonical split names in prepared shards.
SPLITS = ("pool", "val", "test")
