"""Cutting the unlabeled pool into pieces for parallel scoring, and reporting how far scoring is.

Plain functions (no Ray): ``raydal.distributed.score`` sends the pieces to
scoring actors. A piece is a run of whole forward batches of the filtered pool,
the very batches ``raydal.data.shards.iter_batches(manifest, "pool",
batch_size, exclude=...)`` yields in one process. Every row is therefore scored
in the same batch, with the same neighbours, on every path, which makes the
distributed probabilities and uncertainties bit-identical to the in-process
ones (a linear layer's result for a row depends, in its last bit, on the batch
it is computed in).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raydal.exceptions import ConfigError
from raydal.settings import Interval, check_value
from raydal.utils import read_parquet

__all__ = ["PoolPiece", "ScoringProgress", "batches_per_piece", "plan_pieces", "read_piece", "spread_over_nodes"]


@dataclass(frozen=True)
class PoolPiece:
    """Rows of the pool scored as one unit: ``files[i]``'s rows ``rows[i]`` (row numbers in that file), in order.

    ``count`` is the number of rows; it is a multiple of the batch size except in the last piece.
    """

    index: int
    files: tuple[str, ...]
    rows: tuple[np.ndarray, ...]  # int32 [n_i] each
    count: int


def batches_per_piece(total_rows: int, batch_size: int, workers: int, rows_per_file: int) -> int:
    """Forward batches per piece: about four pieces per worker (so a slow one does not hold up the end),
    and no more rows than a shard file holds (so a file is read about once)."""
    batches = max(1, math.ceil(total_rows / batch_size))
    by_balance = math.ceil(batches / (4 * max(1, workers)))
    by_file = max(1, rows_per_file // batch_size)
    return max(1, min(by_balance, by_file))


def plan_pieces(
    files: Sequence[str], batch_size: int, exclude: Collection[str] | None, batches: int
) -> tuple[list[PoolPiece], int]:
    """Cut ``files`` (one split's shards, in order) into pieces of ``batches`` forward batches.

    Reads only the id column. ``exclude``: ids to leave out (the labeled set).
    Returns (pieces, rows kept).
    """
    for name, value in (("batch_size", batch_size), ("batches", batches)):
        check_value(value, name, "plan_pieces", Interval(int, 1))
    drop = pa.array(sorted(str(i) for i in exclude), pa.string()) if exclude else None
    piece_rows = batch_size * batches
    pieces: list[PoolPiece] = []
    cur_files: list[str] = []
    cur_rows: list[np.ndarray] = []
    cur_count = 0
    total = 0

    def close() -> None:
        nonlocal cur_files, cur_rows, cur_count
        pieces.append(PoolPiece(len(pieces), tuple(cur_files), tuple(cur_rows), cur_count))
        cur_files, cur_rows, cur_count = [], [], 0

    for path in files:
        ids = read_parquet(path, columns=["id"])["id"]
        keep = np.arange(len(ids), dtype=np.int32)
        if drop is not None:
            keep = keep[~pc.is_in(ids, value_set=drop).to_numpy(zero_copy_only=False)]
        total += len(keep)
        while len(keep):
            take = keep[: piece_rows - cur_count]
            keep = keep[len(take) :]
            cur_files.append(str(path))
            cur_rows.append(take)
            cur_count += len(take)
            if cur_count == piece_rows:
                close()
    if cur_count:
        close()
    return pieces, total


def read_piece(
    piece: PoolPiece, batch_size: int, columns: Sequence[str] = ("id", "image", "labels")
) -> Iterator[pa.Table]:
    """The piece's rows as Arrow tables of ``batch_size`` rows (the last may be shorter), in plan order."""
    tables = [
        read_parquet(path, columns=list(columns)).take(pa.array(rows)) for path, rows in zip(piece.files, piece.rows)
    ]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def spread_over_nodes(node_cpus: dict[str, float], n: int) -> list[tuple[str, int]]:
    """Place ``n`` workers round-robin over the nodes (largest first, then by id).

    node_cpus: {node id: CPUs}, nodes without CPUs are skipped.
    Returns [(node id, threads)] per worker, threads = the node's CPUs shared by
    its workers (at least 1).
    """
    nodes = sorted((nid for nid, c in node_cpus.items() if c > 0), key=lambda nid: (-node_cpus[nid], nid))
    if not nodes:
        raise ConfigError("No node of the Ray cluster has CPUs to run scoring workers. Fix: add CPUs to a node.")
    placed = [nodes[i % len(nodes)] for i in range(n)]
    per_node = {nid: placed.count(nid) for nid in nodes}
    return [(nid, max(1, int(node_cpus[nid] // per_node[nid]))) for nid in placed]


class ScoringProgress:
    """About ten lines through a scoring pass: rows scored / total, rate and time left.

    log: where lines go (the job log under Ray: the loop's ``log``, or ``print``).
    clock: seconds, for tests.
    """

    def __init__(
        self,
        total: int,
        log: Callable[[str], None] | None,
        *,
        steps: int = 10,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total = int(total)
        self.log = log
        self.done = 0
        self.clock = clock
        self.start = clock()
        self._every = max(1, math.ceil(self.total / max(1, steps)))
        self._next = self._every

    def update(self, rows: int) -> None:
        """Count ``rows`` more scored rows; logs when a step of the total is passed and at the end."""
        self.done += int(rows)
        if self.log is None or (self.done < self._next and self.done < self.total):
            return
        while self._next <= self.done:
            self._next += self._every
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        self.log(
            f"  scored {self.done:,}/{self.total:,} rows ({pct:.0f}%), {rate:,.0f} rows/s, "
            f"{elapsed:.1f}s elapsed, ~{left:.0f}s left"
        )
