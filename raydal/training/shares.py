"""What each data-parallel rank reads, and how the ranks' partial results are combined (no Ray).

Ray Train's workers call these; they are plain functions so they are tested in
one process.

- Training: the labeled rows are located in the shard files (id column only),
  put in (file, row) order and cut into ``world`` contiguous runs of equal
  length (``plan_labeled_shares``); each rank reads its run once per fit
  (``read_share``) and shuffles it in memory every epoch. A rank reads only the
  files that hold its rows, never re-reads them, and the split is the same
  after a worker-group restart (exact resume).
- Evaluation and scoring: a split's rows are cut into ``world`` contiguous,
  balanced row ranges by the files' row counts (``row_ranges``); each rank
  streams its range (``iter_range_batches``), and rank 0 combines the parts
  (``combine_evaluations``; pool scores: ``raydal.query.scoring.merge_pool_scores``).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydal.data.shards import Manifest, decode_batch, rebatch
from raydal.exceptions import ConfigError, DatasetError

#: One rank's training rows: [(shard file, ids of that file in row order), ...].
Share = list[tuple[str, list[str]]]
#: One rank's evaluation/scoring rows: [(shard file, first row, end row), ...].
RowRanges = list[tuple[str, int, int]]

_COLUMNS = ["id", "image", "labels"]


def locate_ids(manifest: Manifest, split: str, ids: Collection[str]) -> Share:
    """Where ``ids`` live: (file, its wanted ids in row order) for each file holding any, in file order.

    Reads only the id column. DatasetError lists the ids that are not in ``split``.
    """
    wanted = {str(i) for i in ids}
    located: Share = []
    found = 0
    for path in manifest.split_files(split):
        file_ids = pq.read_table(path, columns=["id"])["id"].to_pylist()
        mine = [i for i in file_ids if i in wanted]
        if mine:
            located.append((path, mine))
            found += len(mine)
    if found != len(wanted):
        seen = {i for _, part in located for i in part}
        missing = sorted(wanted - seen)
        raise DatasetError(
            f"{len(missing)} labeled ids are not in the {split!r} split of {manifest.root}, e.g. {missing[:3]}. "
            "Fix: train on ids of that split (see its manifest).",
            [(i, f"not in split {split!r}") for i in missing],
        )
    return located


def plan_labeled_shares(located: Share, world: int) -> list[Share]:
    """Cut the located rows into ``world`` contiguous runs of ``n // world`` rows each.

    Equal lengths keep the ranks' batch counts equal (DDP steps together); the
    last ``n % world`` rows are left out, as Ray Data's equal split does.
    """
    if world < 1:
        raise ConfigError(f"The 'world' parameter of plan_labeled_shares must be an int >= 1. Got {world!r}.")
    flat = [(path, i) for path, part in located for i in part]
    per = len(flat) // world
    shares: list[Share] = []
    for rank in range(world):
        share: Share = []
        for path, i in flat[rank * per:(rank + 1) * per]:
            if share and share[-1][0] == path:
                share[-1][1].append(i)
            else:
                share.append((path, [i]))
        shares.append(share)
    return shares


def read_share(manifest: Manifest, share: Share) -> dict[str, np.ndarray]:
    """A rank's training rows decoded in one dict (``decode_batch``), in share order."""
    tables = []
    for path, ids in share:
        table = pq.read_table(path, columns=_COLUMNS)
        tables.append(table.filter(pc.is_in(table["id"], value_set=pa.array(ids, pa.string()))))
    table = pa.concat_tables(tables) if tables else pa.table(
        {"id": pa.array([], pa.string()), "image": pa.array([], pa.binary()), "labels": pa.array([], pa.binary())})
    return decode_batch(table, manifest)


def file_rows(manifest: Manifest, split: str) -> list[tuple[str, int]]:
    """(file, row count) of every file of ``split``, from the Parquet footers."""
    return [(path, pq.ParquetFile(path).metadata.num_rows) for path in manifest.split_files(split)]


def row_ranges(files: Sequence[tuple[str, int]], rank: int, world: int) -> RowRanges:
    """Rank ``rank``'s contiguous share of the rows of ``files``: rows [rank*N/world, (rank+1)*N/world)."""
    total = sum(n for _, n in files)
    lo, hi = rank * total // world, (rank + 1) * total // world
    out: RowRanges = []
    start = 0
    for path, n in files:
        a, b = max(lo, start), min(hi, start + n)
        if a < b:
            out.append((path, a - start, b - start))
        start += n
    return out


def iter_range_batches(
    manifest: Manifest, ranges: RowRanges, batch_size: int, exclude: Collection[str] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Decoded batches of ``batch_size`` rows (the last may be smaller) over ``ranges``, minus ``exclude`` ids."""
    drop = pa.array(sorted(str(i) for i in exclude), pa.string()) if exclude else None

    def tables() -> Iterator[pa.Table]:
        for path, a, b in ranges:
            table = pq.read_table(path, columns=_COLUMNS).slice(a, b - a)
            if drop is not None:
                table = table.filter(pc.invert(pc.is_in(table["id"], value_set=drop)))
            yield table

    yield from rebatch(tables(), batch_size, manifest)


def evaluation_part(model, batches, device, amp: str = "auto") -> dict[str, Any]:
    """One rank's share of an evaluation: ``probs`` [n, C], ``labels`` [n, C], ``loss_sum`` (BCE summed)."""
    from raydal.training.metrics import evaluate

    it = iter(batches)
    first = next(it, None)
    if first is None:  # this rank got no rows
        return {"probs": None, "labels": None, "loss_sum": 0.0}
    out = evaluate(model, itertools.chain([first], it), device, amp=amp, return_probs=True)
    return {"probs": out["probs"], "labels": out["labels"], "loss_sum": out["loss"] * len(out["probs"])}


def combine_evaluations(parts: Sequence[dict[str, Any]], threshold: float = 0.5) -> dict[str, Any]:
    """``evaluate``'s metrics over the union of the ranks' parts (``evaluation_part``)."""
    from raydal.training.metrics import multilabel_metrics

    parts = [p for p in parts if p["probs"] is not None and len(p["probs"])]
    if not parts:
        raise ConfigError("The evaluation split is empty: no rank got a row to evaluate.")
    probs = np.concatenate([p["probs"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    out = multilabel_metrics(labels, probs, threshold)
    out["loss"] = sum(p["loss_sum"] for p in parts) / len(probs)
    return out
