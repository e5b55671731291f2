"""What each data-parallel rank reads, and how the ranks' partial results are combined (no Ray).

Ray Train's workers call these; they are plain functions so they are tested in
one process.

A ``Share`` names rows of a split: ``[(shard file, row numbers in it), ...]``
in file order, the row numbers ascending (a ``range`` for a contiguous run).
Readers fetch only the Parquet row groups holding those rows (``raydal
prepare`` writes row groups of about one image, so a few labeled rows cost
about their own bytes, not their files'; older shard sets with one row group
per file still read, a whole file per group) and decode them in a background
thread a few chunks ahead of the caller (``prefetch``), so reading overlaps
the model's compute.

- Training: the labeled rows are located in the shard files (id column only),
  put in (file, row) order and cut into ``world`` contiguous runs of equal
  length (``plan_labeled_shares``); each rank reads its run once per fit
  (``read_share``, peak memory about the share plus a few bounded chunks) and
  shuffles it in memory every epoch. The split is the same after a
  worker-group restart (exact resume).
- Evaluation and scoring: a split's rows (or a fixed seeded subsample of them,
  ``subsample_rows``) are cut into ``world`` contiguous, balanced parts
  (``split_share``, ``row_ranges``); each rank streams its part
  (``iter_share_batches``, ``iter_range_batches``), and rank 0 combines the parts
  (``combine_evaluations``; pool scores: ``raydal.query.scoring.merge_pool_scores``).
"""

from __future__ import annotations

import functools
import itertools
import json
import queue
import threading
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raydal.data.shards import Manifest, decode_batch, file_ids, open_shard, rebatch  # noqa: F401 (re-exported)
from raydal.exceptions import ConfigError, DatasetError
from raydal.utils import read_parquet

#: Rows of a split: [(shard file, ascending row numbers in that file), ...] in file order.
Share = list[tuple[str, Sequence[int]]]
#: Contiguous rows of a split: [(shard file, first row, end row), ...].
RowRanges = list[tuple[str, int, int]]

_COLUMNS = ["id", "image", "labels"]
#: At most this many bytes of row groups per read (at least one group): bounds what the
#: read-ahead holds besides the caller's own data.
CHUNK_BYTES = 32 << 20
#: Decoded chunks or batches the background reader keeps ready ahead of the caller.
READ_AHEAD = 2

T = TypeVar("T")


# -- planning ----------------------------------------------------------------------


def split_index(manifest: Manifest, split: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    """The ids of ``split`` in shard order and each file's first row (int [F + 1], the last: the row count).

    Read once per process and shard set (every file's footer, and its id
    column where ``file_ids`` needs it: with one image per row group a footer
    holds ~550 bytes per row, so re-reading every file each AL iteration would
    cost the driver seconds at 10^5-10^6 rows).
    A shard set is never changed in place (``prepare`` writes a new one and
    renames it), so the manifest identifies it; ``read_share`` still checks
    the ids it reads against the ones planned.
    """
    manifest_json = json.dumps(manifest.to_json(), sort_keys=True, default=str)
    index, rows = manifest.ids_file(split), manifest.file_rows(split)
    if index is not None and rows is not None:  # prepare's id index: one small file, no footers
        return _split_index_from_file(index, tuple(rows), manifest_json)
    return _split_index(split, tuple(manifest.split_files(split)), manifest_json)


@functools.lru_cache(maxsize=6)
def _split_index_from_file(index: str, rows: tuple[int, ...], manifest_json: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    ids = read_parquet(index, columns=["id"])["id"]
    if len(ids) != sum(rows):
        raise DatasetError(
            f"The id index {index} holds {len(ids)} ids but the manifest counts {sum(rows)} rows. "
            "Fix: prepare the shards again."
        )
    return pa.chunked_array(ids.chunks, pa.string()), np.cumsum([0, *rows])


@functools.lru_cache(maxsize=6)
def _split_index(split: str, files: tuple[str, ...], manifest_json: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    chunks, counts = [], []
    for path in files:
        ids = file_ids(open_shard(path))
        chunks.append(ids)
        counts.append(len(ids))
    return pa.chunked_array(chunks, pa.string()), np.cumsum([0] + counts)


def locate_ids(manifest: Manifest, split: str, ids: Collection[str]) -> Share:
    """Where ``ids`` live: (file, their row numbers, ascending) for each file holding any, in file order.

    Reads the split's ids once per process (``split_index``). DatasetError
    lists the ids that are not in ``split``.
    """
    wanted = pa.array(sorted({str(i) for i in ids}), pa.string())
    all_ids, starts = split_index(manifest, split)
    rows = np.flatnonzero(pc.is_in(all_ids, value_set=wanted).to_numpy(zero_copy_only=False))
    if rows.size != len(wanted):
        missing = pc.filter(wanted, pc.invert(pc.is_in(wanted, value_set=all_ids))).to_pylist()
        raise DatasetError(
            f"{len(missing)} labeled ids are not in the {split!r} split of {manifest.root}, e.g. {missing[:3]}. "
            "Fix: train on ids of that split (see its manifest).",
            [(i, f"not in split {split!r}") for i in missing],
        )
    file_of = np.searchsorted(starts, rows, side="right") - 1
    paths = manifest.split_files(split)
    return [(paths[k], (rows[file_of == k] - starts[k]).tolist()) for k in np.unique(file_of)]


def split_share(share: Share, world: int, equal: bool = False) -> list[Share]:
    """Cut ``share`` into ``world`` contiguous parts, in order.

    ``equal``: every part gets ``n // world`` rows and the last ``n % world`` are
    left out (training: the ranks step together); otherwise part ``r`` gets rows
    ``[r*n//world, (r+1)*n//world)`` and nothing is left out (evaluation, scoring).
    """
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        raise ConfigError(f"The 'world' parameter must be an int >= 1. Got {world!r} instead.")
    n = sum(len(rows) for _, rows in share)
    bounds = [r * (n // world) for r in range(world + 1)] if equal else [r * n // world for r in range(world + 1)]
    parts: list[Share] = []
    for lo, hi in zip(bounds, bounds[1:]):
        part: Share = []
        start = 0
        for path, rows in share:
            a, b = max(lo, start), min(hi, start + len(rows))
            if a < b:
                part.append((path, rows[a - start : b - start]))
            start += len(rows)
        parts.append(part)
    return parts


def plan_labeled_shares(located: Share, world: int) -> list[Share]:
    """Cut the located rows into ``world`` contiguous runs of ``n // world`` rows each.

    Equal lengths keep the ranks' batch counts equal (DDP steps together); the
    last ``n % world`` rows are left out, as Ray Data's equal split does.
    """
    return split_share(located, world, equal=True)


def file_rows(manifest: Manifest, split: str) -> list[tuple[str, int]]:
    """(file, row count) of every file of ``split`` (``split_index``: read once per process)."""
    starts = split_index(manifest, split)[1]
    return [(path, int(b - a)) for path, a, b in zip(manifest.split_files(split), starts, starts[1:])]


def row_ranges(files: Sequence[tuple[str, int]], rank: int, world: int) -> RowRanges:
    """Rank ``rank``'s contiguous share of the rows of ``files``: rows [rank*N/world, (rank+1)*N/world)."""
    part = split_share([(path, range(n)) for path, n in files], world)[rank]
    return [(path, rows.start, rows.stop) for path, rows in part]


def subsample_rows(files: Sequence[tuple[str, int]], max_samples: int | None, seed: int) -> Share:
    """A fixed, seeded subsample of ``max_samples`` rows of ``files`` (every row when None or more).

    The same ``files``, ``max_samples`` and ``seed`` give the same rows (drawn
    uniformly without replacement), so every AL iteration evaluates the same
    rows. Returned in file order.
    """
    total = sum(n for _, n in files)
    if max_samples is None or max_samples >= total:
        return [(path, range(n)) for path, n in files if n]
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_samples, replace=False))
    starts = np.cumsum([0] + [n for _, n in files])
    share: Share = []
    for k, (path, _) in enumerate(files):
        lo, hi = np.searchsorted(chosen, [starts[k], starts[k + 1]])
        if hi > lo:
            share.append((path, (chosen[lo:hi] - starts[k]).tolist()))
    return share


def whole_split(manifest: Manifest, split: str) -> Share:
    """Every row of ``split``, as a ``Share`` (one ``range`` per file)."""
    return subsample_rows(file_rows(manifest, split), None, 0)


def split_seed(split: str) -> int:
    """The seed of a split's evaluation subsample: fixed per split name, the same for every trial."""
    return zlib.crc32(split.encode())


def evaluation_rows(manifest: Manifest, split: str, max_samples: int | None) -> tuple[Share, dict[str, int]]:
    """The rows an evaluation of ``split`` reads, and what the metrics record about them.

    Every row when ``max_samples`` is None or the split is no larger (recorded:
    nothing); else the fixed subsample ``subsample_rows(..., split_seed(split))``
    (recorded: ``split_rows``, the split's size, and ``subsample_seed``; the
    metrics' ``n_samples`` says how many rows were evaluated).
    """
    files = file_rows(manifest, split)
    total = sum(n for _, n in files)
    if max_samples is None or max_samples >= total:
        return subsample_rows(files, None, 0), {}
    seed = split_seed(split)
    return subsample_rows(files, max_samples, seed), {"split_rows": total, "subsample_seed": seed}


# -- reading -----------------------------------------------------------------------


def prefetch(items: Iterable[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """``items`` in their order, produced by a background thread up to ``depth`` items ahead.

    The thread reads and decodes while the caller computes (pyarrow's reads and
    torch's forward passes release the GIL). An exception in the thread is
    raised to the caller at that item; closing the iterator early stops the
    thread after the item it is working on. ``depth`` 0: no thread.
    """
    if depth < 1:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((end, None))
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            ready.put((end, err))

    thread = threading.Thread(target=produce, name="raydal-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, err = ready.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


def iter_row_tables(
    share: Share, columns: Sequence[str] = _COLUMNS, max_bytes: int = CHUNK_BYTES
) -> Iterator[pa.Table]:
    """The rows of ``share`` as Arrow tables, in share order.

    Each table comes from one read of the row groups holding its rows (at most
    ``max_bytes`` of them by the footer's sizes, at least one group); rows of
    those groups that ``share`` does not name are dropped. Only the named row
    groups are fetched: with one image per group, a row costs about its own bytes.
    """
    for path, rows in share:
        if not len(rows):
            continue
        pf = open_shard(path)
        meta = pf.metadata
        starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        rows = np.asarray(rows, dtype=np.int64)
        if (np.diff(rows) <= 0).any():
            raise ConfigError(f"The row numbers of {path} in a Share must be ascending and distinct.")
        if rows[0] < 0 or rows[-1] >= starts[-1]:
            raise DatasetError(
                f"{path} has {starts[-1]} rows but rows up to {rows[-1]} were planned in it: the shard set changed "
                "since the run located its rows. Fix: restart the run on an unchanged shard set."
            )
        group_of = np.searchsorted(starts, rows, side="right") - 1
        groups, first = np.unique(group_of, return_index=True)
        sizes = np.array([meta.row_group(int(g)).total_byte_size for g in groups])
        lo = 0
        while lo < len(groups):
            hi = lo + 1
            total = sizes[lo]
            while hi < len(groups) and total + sizes[hi] <= max_bytes:
                total += sizes[hi]
                hi += 1
            chunk = groups[lo:hi]
            table = pf.read_row_groups([int(g) for g in chunk], columns=list(columns))
            a, b = first[lo], (first[hi] if hi < len(groups) else len(rows))
            offsets = np.cumsum([0] + [starts[g + 1] - starts[g] for g in chunk[:-1]])
            local = rows[a:b] - starts[group_of[a:b]] + offsets[np.searchsorted(chunk, group_of[a:b])]
            if local.size != table.num_rows:
                table = table.take(pa.array(local))  # (the groups' other rows are freed here)
            yield table
            del table
            lo = hi


def iter_share_batches(
    manifest: Manifest,
    share: Share,
    batch_size: int,
    exclude: Collection[str] | None = None,
    read_ahead: int = READ_AHEAD,
) -> Iterator[dict[str, np.ndarray]]:
    """Decoded batches of ``batch_size`` rows (the last may be smaller) over ``share``, minus ``exclude`` ids.

    Read and decoded ``read_ahead`` batches ahead in a background thread; the
    batches are the same, in the same order, for any ``read_ahead``.
    """
    drop = pa.array(sorted(str(i) for i in exclude), pa.string()) if exclude else None

    def tables() -> Iterator[pa.Table]:
        for table in iter_row_tables(share):
            if drop is not None:
                table = table.filter(pc.invert(pc.is_in(table["id"], value_set=drop)))
            yield table

    return prefetch(rebatch(tables(), batch_size, manifest), read_ahead)


def iter_range_batches(
    manifest: Manifest,
    ranges: RowRanges,
    batch_size: int,
    exclude: Collection[str] | None = None,
    read_ahead: int = READ_AHEAD,
) -> Iterator[dict[str, np.ndarray]]:
    """``iter_share_batches`` over contiguous ``ranges`` (``row_ranges``)."""
    return iter_share_batches(
        manifest, [(path, range(a, b)) for path, a, b in ranges], batch_size, exclude=exclude, read_ahead=read_ahead
    )


def row_nbytes(manifest: Manifest) -> int:
    """Decoded bytes of one row: its image and its labels."""
    return int(np.prod(manifest.image_shape)) + manifest.num_classes


def read_share(
    manifest: Manifest, share: Share, expected: Collection[str] | None = None, read_ahead: int = READ_AHEAD
) -> dict[str, np.ndarray]:
    """A rank's rows decoded in one dict (as ``decode_batch``), in share order.

    ``expected``: ids every row read must have (the labeled set); a row with
    another id means the shard files changed since the rows were located
    (``DatasetError``).

    The output arrays are allocated once and filled chunk by chunk (each at
    most a sixteenth of the share, read ``read_ahead`` chunks ahead), so peak
    memory stays within 1.5x the share once the share spans several row groups
    (a reader holds a few chunks at a time: the read, its decoded copy, the queue).
    """
    n = sum(len(rows) for _, rows in share)
    images = np.empty((n, *manifest.image_shape), dtype=np.uint8)
    labels = np.empty((n, manifest.num_classes), dtype=np.uint8)
    ids: list[np.ndarray] = []
    chunk_bytes = min(CHUNK_BYTES, max(1, n * row_nbytes(manifest) // 16))
    decoded = (decode_batch(t, manifest) for t in iter_row_tables(share, max_bytes=chunk_bytes))
    at = 0
    for part in prefetch(decoded, read_ahead):
        k = len(part["id"])
        images[at : at + k] = part["image"]
        labels[at : at + k] = part["labels"]
        ids.append(part["id"])
        at += k
    if at != n:
        raise DatasetError(
            f"Read {at} rows of a share of {n}: the shard files changed while reading. "
            "Fix: restart the run on an unchanged shard set."
        )
    out_ids = np.concatenate(ids) if ids else np.array([], dtype=str)
    if expected is not None and n:
        known = np.isin(out_ids, np.asarray(sorted(str(i) for i in expected)))
        if not known.all():
            raise DatasetError(
                f"Read rows with ids outside the labeled set (e.g. {out_ids[~known][:3].tolist()}): the shard files "
                f"at {manifest.root} changed since the run located its rows. Fix: restart the run on an unchanged "
                "shard set.",
                [(str(i), "not a labeled id") for i in out_ids[~known]],
            )
    return {"id": out_ids, "image": images, "labels": labels}


# -- combining ---------------------------------------------------------------------


def evaluation_part(model, batches, device, amp: str = "auto") -> dict[str, Any]:
    """One rank's share of an evaluation: ``probs`` [n, C], ``labels`` [n, C], ``loss_sum`` (BCE summed)."""
    from raydal.training.metrics import evaluate

    it = iter(batches)
    first = next(it, None)
    if first is None:  # this rank got no rows
        return {"probs": None, "labels": None, "loss_sum": 0.0}
    out = evaluate(model, itertools.chain([first], it), device, amp=amp, return_probs=True)
    return {"probs": out["probs"], "labels": out["labels"], "loss_sum": out["loss"] * len(out["probs"])}


def combine_evaluations(parts: Sequence[dict[str, Any]], threshold: float | None = None) -> dict[str, Any]:
    """``evaluate``'s metrics over the union of the ranks' parts (``evaluation_part``); a class is
    predicted at ``threshold`` (the run's ``TrainConfig.threshold``; None: its default)."""
    from raydal.training.metrics import multilabel_metrics

    parts = [p for p in parts if p["probs"] is not None and len(p["probs"])]
    if not parts:
        raise ConfigError("The evaluation split is empty: no rank got a row to evaluate.")
    probs = np.concatenate([p["probs"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    out = multilabel_metrics(labels, probs, threshold)
    out["loss"] = sum(p["loss_sum"] for p in parts) / len(probs)
    return out
