"""Benchmark scaffolding without torch: a pool of ids without images, and a multi-node Ray cluster here.

The driver of a benchmark imports only this (not ``standin``, which imports
torch), so that its memory is what raydal's driver-side code needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------- a pool without images


def write_pool(
    out_dir: str | Path,
    n: int,
    *,
    classes: int = 15,
    bands: int = 4,
    rows_per_file: int = 10_000,
    id_format: str = "p{:07d}",
) -> Path:
    """Write a prepared shard set (real Parquet layout and manifest) whose ``pool`` split has ``n`` rows
    and no images: each "image" is 1 x 1 x ``bands`` pixels holding the row number's bytes, so the
    stand-in's outputs differ per row. Ids are ``id_format.format(row)``: ``p0000000``, ... Returns the folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydal.constants import MANIFEST_NAME
    from raydal.data.shards import SCHEMA, Manifest
    from raydal.utils import atomic_write_json

    out = Path(out_dir)
    (out / "pool").mkdir(parents=True, exist_ok=True)
    files = []
    for f, start in enumerate(range(0, n, rows_per_file)):
        rows = np.arange(start, min(n, start + rows_per_file), dtype=np.int64)
        pixels = np.zeros((len(rows), bands), np.uint8)
        raw = rows.astype("<u4").view(np.uint8).reshape(-1, 4)
        pixels[:, : min(4, bands)] = raw[:, : min(4, bands)]
        table = pa.table(
            {
                "id": pa.array([id_format.format(i) for i in rows], pa.string()),
                "image": _fixed_binary(pixels),
                "labels": _fixed_binary(np.zeros((len(rows), classes), np.uint8)),
                "path": pa.array([""] * len(rows), pa.string()),
                "labeled": pa.array(np.ones(len(rows), bool)),
            },
            schema=SCHEMA,
        )
        name = f"pool/part-{f:05d}.parquet"
        pq.write_table(table, out / name)
        files.append(name)
    manifest = Manifest(
        root=out,
        dataset="standin",
        classes=[f"c{i}" for i in range(classes)],
        band_names=[f"b{i}" for i in range(bands)],
        bands=bands,
        image_size=1,
        splits={"pool": {"count": n, "files": files}},
        label_counts={"pool": {}},
        source_root="(stand-in: no images)",
        seed=0,
    )
    atomic_write_json(out / MANIFEST_NAME, manifest.to_json())
    return out


def _fixed_binary(values: np.ndarray):
    """uint8 [n, w] -> a pyarrow binary array of n values of w bytes, without Python objects."""
    import pyarrow as pa

    n, w = values.shape
    offsets = np.arange(n + 1, dtype=np.int32) * w
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(values))]
    )


# ---------------------------------------------------------------------- a multi-node cluster here


def start_cluster(nodes: int, cpus_per_node: int, temp_dir: str, setup_hook: str | None = "standin.register"):
    """A ``ray.cluster_utils.Cluster`` of ``nodes`` nodes on 127.0.0.1 and the driver connected to it
    (``raydal.distributed.session.simulated_cluster``, the factory the tests use too).

    Every Ray worker runs ``setup_hook`` (registering the stand-in) when it starts; this folder goes
    on their ``PYTHONPATH``. Returns the cluster; its ``shutdown()`` disconnects the driver too.
    """
    import contextlib

    from raydal.distributed.session import simulated_cluster

    here = str(Path(__file__).resolve().parent)
    root = str(Path(here).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, root, os.environ.get("PYTHONPATH")) if p)
    runtime_env: dict = {}
    if setup_hook:
        runtime_env["worker_process_setup_hook"] = setup_hook
    stack = contextlib.ExitStack()
    sim = stack.enter_context(
        simulated_cluster(
            nodes - 1, cpus_per_node, temp_dir, object_store_mb=300, runtime_env=runtime_env, log_level="ERROR"
        )
    )
    cluster = sim.cluster
    cluster.shutdown = stack.close  # ray.shutdown(), then the nodes
    return cluster
