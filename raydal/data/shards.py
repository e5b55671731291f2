"""Parquet shards: an archive validated, resized and packed once, read many times.

Layout of a prepared shard set::

    <out_dir>/manifest.json                 written last: its presence marks a complete set
    <out_dir>/<split>/part-NNNNN.parquet    splits "pool", "val", "test"
    <out_dir>/quarantine.csv                with skip_bad: the files and rows left out

``out_dir`` is a local folder or a storage URI (``s3://bucket/shards``, configured
by the standard AWS environment; see ``raydal.utils.filesystem``). Every Parquet
read goes through ``raydal.utils.read_parquet`` / ``parquet_file``, so readers on
any node read the same set.

Parquet schema: ``id: string``, ``image: binary`` (raw uint8, C-order
[H, W, B]), ``labels: binary`` (raw uint8 [C] multi-hot), ``path: string``,
``labeled: bool`` (False: an image without labels yet, all-zero ``labels``;
shard sets written before this column existed read as all labeled).
Shapes and names live in the manifest. This module imports neither Ray nor
rasterio at module level: the readers import rasterio when they open a file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydal.constants import IDS_FILE, MANIFEST_NAME, QUARANTINE_NAME, SHARD_FORMAT_VERSION, SPLITS
from raydal.data import get_reader
from raydal.data.base import BAD_FILE_FIX, ArchiveIndex, ArchiveReader, Problem
from raydal.exceptions import ConfigError, DatasetError, DatasetNotFoundError
from raydal.settings import Interval, check_value, param_error
from raydal.utils import (
    atomic_write_json,
    file_exists,
    filesystem,
    is_uri,
    join_location,
    normal_location,
    parquet_file,
    read_bytes,
    read_parquet,
)
from raydal.utils import (
    rng as make_rng,
)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),
        pa.field("labels", pa.binary(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("labeled", pa.bool_(), nullable=False),
    ]
)
#: Images whose sides differ by more than this ratio are refused: resizing would distort them.
MAX_ASPECT = 1.25
#: Bytes of images per Parquet row group (at least one image: real images are 49-330 KB).
#: Readers fetch only the row groups holding the rows they need (raydal.training.shares).
ROW_GROUP_BYTES = 1 << 16
#: UC Merced has no published split: the paper's random 525 / 525 / 1050 of 2100.
RANDOM_VAL_SHARE = 0.25
RANDOM_TEST_SHARE = 0.25
#: TreeSatAI's val is carved from its train list: the paper's 6799 val of 6799 + 38531.
TRAIN_VAL_SHARE = 6799 / (6799 + 38531)


@dataclass
class Manifest:
    """What a prepared shard set holds; ``root`` is its location (not stored in the JSON):
    a local folder (``Path``) or a storage URI (``str``, e.g. ``s3://bucket/shards``)."""

    root: Path | str
    dataset: str
    classes: list[str]  # C
    band_names: list[str]  # B
    bands: int
    image_size: int  # every image is image_size x image_size
    splits: dict[str, dict[str, Any]]  # {split: {"count": int, "files": [relative paths]}}
    label_counts: dict[str, dict[str, int]]  # {split: {class: images with that label}}
    source_root: str
    seed: int
    format_version: int = SHARD_FORMAT_VERSION
    scaling: dict[str, Any] = field(default_factory=dict)
    reader_settings: dict[str, Any] = field(default_factory=dict)
    split_rule: str = ""
    quarantined: int = 0
    #: {split: images without labels} (only pool images can lack labels).
    unlabeled: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, B) of every decoded image."""
        return (self.image_size, self.image_size, self.bands)

    def split_files(self, split: str) -> list[str]:
        """Locations of ``split``'s Parquet files, in order: absolute paths, or URIs for a URI root."""
        if split not in self.splits:
            raise param_error("split", f"the shards at {self.root}", f"one of {list(self.splits)}", split)
        return [join_location(self.root, f) for f in self.splits[split]["files"]]

    def ids_file(self, split: str) -> str | None:
        """Location of ``split``'s id index (``id``, ``labeled`` of every row, in shard order; one small
        Parquet file written by ``prepare``), or None for shard sets written before it existed."""
        name = self.splits.get(split, {}).get("ids")
        return join_location(self.root, name) if name else None

    def file_rows(self, split: str) -> list[int] | None:
        """Rows of each of ``split``'s files (as ``split_files``), or None where the manifest predates it."""
        rows = self.splits.get(split, {}).get("rows")
        return list(rows) if rows is not None else None

    def to_json(self) -> dict[str, Any]:
        """The manifest.json content."""
        data = asdict(self)
        del data["root"]
        return data


def load_manifest(directory: str | Path) -> Manifest:
    """Read ``directory/manifest.json`` (or a manifest.json location) written by ``prepare``.

    directory: a local folder or a storage URI (``s3://bucket/shards``). Raises
    ``DatasetNotFoundError`` when the manifest or a shard file it names is
    missing (or the storage cannot be reached), and ``DatasetError`` when it was
    written by another shard format.
    """
    location = _location(directory)
    fix = "Fix: run `raydal prepare <dataset> <archive> <out_dir>` and point at its out_dir."
    try:
        if _basename(location) == MANIFEST_NAME and file_exists(location):
            location = _parent(location)
        manifest_path = join_location(location, MANIFEST_NAME)
        if not file_exists(manifest_path):
            raise DatasetNotFoundError(f"No prepared shards at {location}: {manifest_path} is missing. {fix}")
        raw = read_bytes(manifest_path)
    except OSError as err:
        if isinstance(err, DatasetNotFoundError):
            raise
        raise DatasetNotFoundError(f"Cannot read the shards at {location}: {err}. {_STORAGE_FIX}") from err
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{manifest_path} is not valid JSON ({err}). {fix}") from err
    if data.get("format_version") != SHARD_FORMAT_VERSION:
        raise DatasetError(
            f"{manifest_path} has shard format {data.get('format_version')!r}; this raydal reads "
            f"format {SHARD_FORMAT_VERSION}. {fix}"
        )
    for key in ("splits", "label_counts"):  # JSON keys are sorted; keep pool, val, test order
        if isinstance(data.get(key), dict):
            data[key] = dict(sorted(data[key].items(), key=lambda kv: _split_rank(kv[0])))
    try:
        manifest = Manifest(root=location, **data)
    except TypeError as err:
        raise DatasetError(f"{manifest_path} is not a raydal shard manifest ({err}). {fix}") from err
    missing = _missing_files(manifest)
    if missing:
        raise DatasetNotFoundError(
            f"The shard set at {location} is incomplete: {len(missing)} files named in its manifest are "
            f"missing, e.g. {missing[0]}. {fix}"
        )
    return manifest


_STORAGE_FIX = (
    "Fix: check the URI, and for s3:// the AWS environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) on every node."
)


def _location(directory: str | Path) -> Path | str:
    """A shard set's location as ``Manifest.root`` keeps it: a resolved local Path, or a URI without a trailing /."""
    location = normal_location(directory)
    return location if is_uri(location) else Path(location)


def _basename(location: Path | str) -> str:
    return location.name if isinstance(location, Path) else location.rsplit("/", 1)[-1]


def _parent(location: Path | str) -> Path | str:
    return location.parent if isinstance(location, Path) else location.rsplit("/", 1)[0]


def _missing_files(manifest: Manifest) -> list[str]:
    """The files named in the manifest that are not there (one listing on object storage)."""
    files = [f for split in manifest.splits for f in manifest.split_files(split)]
    files += [f for split in manifest.splits if (f := manifest.ids_file(split))]
    if not is_uri(manifest.root):
        return [f for f in files if not os.path.isfile(f)]
    import pyarrow.fs as pafs

    fs, base = filesystem(str(manifest.root))
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as err:
        raise DatasetNotFoundError(f"Cannot list the shards at {manifest.root}: {err}. {_STORAGE_FIX}") from err
    present = {info.path for info in infos if info.type == pafs.FileType.File}
    return [f for f in files if filesystem(f)[1] not in present]


def _split_rank(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


# -- preparing ---------------------------------------------------------------------


def prepare(
    dataset: str,
    root: str | Path,
    out_dir: str | Path,
    size: int | None = None,
    seed: int = 0,
    shard_size: int = 512,
    skip_bad: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    **reader_settings: Any,
) -> Manifest:
    """Validate every image of an archive, resize it and pack it into Parquet shards.

    dataset, root, reader_settings: the archive and its reader (``get_reader``).
    size: side in pixels of the packed images (default: the dataset's model size,
    ucmerced 256, treesatai 288, bigearthnet 120). seed: seeds the val/test/pool
    split. shard_size: images per Parquet file. skip_bad: leave bad files and rows
    out and list them in ``out_dir/quarantine.csv`` instead of raising one
    ``DatasetError`` listing all of them. overwrite: replace an existing non-empty
    ``out_dir``. workers: threads reading images (default: CPU count, at most 8).

    The set is built in a hidden sibling folder and renamed into place when
    complete, so ``out_dir`` never holds a half-written set. A storage URI
    ``out_dir`` (``s3://bucket/shards``) is built in a local temp folder
    (``$TMPDIR``) and then uploaded, manifest.json last.
    """
    check_value(shard_size, "shard_size", "prepare", Interval(int, 1))
    for name, value in (("size", size), ("workers", workers)):
        check_value(value, name, "prepare", Interval(int, 1), nullable=True)
    if is_uri(out_dir):
        target = _location(out_dir)
        _check_uri_empty(target, overwrite)
        with tempfile.TemporaryDirectory(prefix="raydal-prepare-") as tmp:
            manifest = prepare(
                dataset,
                root,
                Path(tmp) / "shards",
                size=size,
                seed=seed,
                shard_size=shard_size,
                skip_bad=skip_bad,
                workers=workers,
                **reader_settings,
            )
            upload_shards(manifest.root, target)
        return dataclasses.replace(manifest, root=target)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(
            f"The 'out_dir' of prepare must be empty or absent. {out_dir} already holds files: "
            f"remove it or choose a new folder, or pass overwrite=True (raydal prepare --overwrite) to replace it."
        )
    reader = get_reader(dataset, root, **reader_settings)
    size = size or reader.default_size
    index, problems = reader.scan()
    splits = assign_splits(index, seed, reader.holdout_shares())
    reader.fit_conversion(list(index.paths))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        split_info, label_counts, unlabeled = {}, {}, {}
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            for split in SPLITS:
                rows = np.flatnonzero(splits == split)
                files, kept, bad, file_rows = _write_split(reader, index, rows, split, size, shard_size, tmp, pool)
                problems += bad
                split_info[split] = {"count": int(kept.size), "files": files, "rows": file_rows}
                if files:  # the id index: the driver reads one small file instead of every footer
                    split_info[split]["ids"] = write_id_index(
                        tmp, split, [index.ids[i] for i in kept], index.labeled[kept]
                    )
                counts = index.labels[kept].sum(0) if kept.size else np.zeros(len(index.classes), int)
                label_counts[split] = {c: int(k) for c, k in zip(index.classes, counts)}
                unlabeled[split] = int((~index.labeled[kept]).sum()) if kept.size else 0
        if problems and not skip_bad:
            raise DatasetError(
                f"Found {len(problems)} bad files or label rows in the {dataset} archive at {reader.root}; "
                f"nothing was written to {out_dir}. Fix: {BAD_FILE_FIX}.",
                problems,
            )
        if skip_bad:
            _write_quarantine(tmp / QUARANTINE_NAME, problems)
        manifest = Manifest(
            root=out_dir,
            dataset=dataset,
            classes=list(index.classes),
            band_names=list(index.band_names),
            bands=len(index.band_names),
            image_size=size,
            splits=split_info,
            label_counts=label_counts,
            source_root=str(reader.root),
            seed=seed,
            scaling=reader.scaling(),
            reader_settings=reader.settings(),
            split_rule=_split_rule(index, reader.holdout_shares()),
            quarantined=len(problems),
            unlabeled=unlabeled,
        )
        atomic_write_json(tmp / MANIFEST_NAME, manifest.to_json())
        _move_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _check_uri_empty(uri: str, overwrite: bool) -> None:
    """Refuse a non-empty storage ``out_dir`` unless ``overwrite`` (before any work is done)."""
    import pyarrow.fs as pafs

    fs, base = filesystem(uri)
    try:
        held = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError as err:
        raise DatasetNotFoundError(f"Cannot list {uri}: {err}. {_STORAGE_FIX}") from err
    if held and not overwrite:
        raise ConfigError(
            f"The 'out_dir' of prepare must be empty or absent. {uri} already holds {len(held)} entries "
            f"(e.g. {held[0].path}): remove them or choose a new location, or pass overwrite=True "
            "(raydal prepare --overwrite) to replace them."
        )


def upload_shards(local: str | Path, uri: str) -> None:
    """Copy the shard set in the local folder ``local`` to the storage URI ``uri``, replacing what is there.

    manifest.json is removed first and written last, so at every moment ``uri``
    either holds no manifest or a complete set (``load_manifest`` checks the files).
    """
    import pyarrow.fs as pafs

    local = Path(local)
    fs, base = filesystem(uri)
    manifest_path = f"{base}/{MANIFEST_NAME}"
    try:
        if fs.get_file_info(manifest_path).type != pafs.FileType.NotFound:
            fs.delete_file(manifest_path)
        if fs.get_file_info(base).type == pafs.FileType.Directory:  # an old set (overwrite)
            if "/" in base.strip("/"):
                fs.delete_dir(base)
            else:  # a bucket itself
                fs.delete_dir_contents(base)
        for entry in sorted(local.iterdir()):
            if entry.name == MANIFEST_NAME:
                continue
            pafs.copy_files(
                str(entry), f"{base}/{entry.name}", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
            )
        with fs.open_output_stream(manifest_path) as f:
            f.write((local / MANIFEST_NAME).read_bytes())
    except OSError as err:
        raise DatasetError(
            f"Uploading the shards from {local} to {uri} failed: {err}; {uri} holds no "
            f"manifest.json (an incomplete set). {_STORAGE_FIX} Then prepare again."
        ) from err


def assign_splits(index: ArchiveIndex, seed: int, shares: tuple[float, float] | None = None) -> np.ndarray:
    """Each image's shard split (str [N] of "pool", "val", "test"), from the archive's split.

    Images without labels (``index.labeled`` False) always go to the pool. Of the
    labeled ones: published "test" stays test and "val" stays val. Where the
    archive publishes no split at all, a seeded random val / test share (``shares``,
    default 25% / 25%) of the labeled images, the rest to the pool; where it
    publishes train/test only (TreeSatAI), val is a seeded random share of train
    (``shares[0]``, default TRAIN_VAL_SHARE); the rest of train is the pool.
    """
    published = np.array(index.splits, dtype=object)
    labeled = index.labeled
    out = np.full(len(index), "pool", dtype=object)
    gen = make_rng(seed)
    val_share, test_share = shares or (None, None)
    if labeled.any() and (published[labeled] == "").all():
        rows = np.flatnonzero(labeled)
        order = rows[gen.permutation(rows.size)]
        n_val = round((RANDOM_VAL_SHARE if val_share is None else val_share) * rows.size)
        n_test = round((RANDOM_TEST_SHARE if test_share is None else test_share) * rows.size)
        out[order[:n_val]] = "val"
        out[order[n_val : n_val + n_test]] = "test"
        return out
    out[labeled & (published == "test")] = "test"
    out[labeled & (published == "val")] = "val"
    if not (published[labeled] == "val").any():
        train = np.flatnonzero(labeled & (published != "test"))
        share = TRAIN_VAL_SHARE if val_share is None else val_share
        out[gen.permutation(train)[: round(share * train.size)]] = "val"
    return out


def _split_rule(index: ArchiveIndex, shares: tuple[float, float] | None = None) -> str:
    val_share, test_share = shares or (None, None)
    published = set(np.array(index.splits, dtype=object)[index.labeled])
    unlabeled = "; images without labels -> pool" if not index.labeled.all() else ""
    if published <= {""}:
        v = RANDOM_VAL_SHARE if val_share is None else val_share
        t = RANDOM_TEST_SHARE if test_share is None else test_share
        return f"random: val {v:.0%}, test {t:.0%}, pool the rest (seeded){unlabeled}"
    if "val" in published:
        return f"published: train -> pool, val -> val, test -> test{unlabeled}"
    share = TRAIN_VAL_SHARE if val_share is None else val_share
    return f"published test -> test; val a seeded random {share:.4f} of train; pool the rest{unlabeled}"


def write_id_index(root: Path, split: str, ids: Sequence[str], labeled: np.ndarray) -> str:
    """Write ``split``'s id index under ``root``: ``id`` (string [N]) and ``labeled`` (bool [N]) of every
    row in shard order. Returns its name relative to ``root`` (the manifest's ``splits[split]["ids"]``)."""
    name = IDS_FILE.format(split=split)
    pq.write_table(
        pa.table({"id": pa.array(list(ids), pa.string()), "labeled": pa.array(labeled, pa.bool_())}), root / name
    )
    return name


def _write_split(
    reader: ArchiveReader,
    index: ArchiveIndex,
    rows: np.ndarray,
    split: str,
    size: int,
    shard_size: int,
    out: Path,
    pool: ThreadPoolExecutor,
) -> tuple[list[str], np.ndarray, list[Problem], list[int]]:
    """Write ``index`` rows ``rows`` as ``out/split/part-NNNNN.parquet``.

    Returns the relative file names, the index rows written (int [K]), the
    problems of the images that could not be read and each file's row count.
    """
    files: list[str] = []
    file_rows: list[int] = []
    kept: list[int] = []
    problems: list[Problem] = []
    split_dir = out / split
    for start in range(0, rows.size, shard_size):
        chunk = rows[start : start + shard_size]
        loaded = pool.map(lambda i: _load_resized(reader, index.paths[i], size), chunk)
        good, images = [], []
        for i, (image, problem) in zip(chunk, loaded):
            if problem is None:
                good.append(i)
                images.append(image)
            else:
                problems.append(problem)
        if not good:
            continue
        table = pa.table(
            {
                "id": [index.ids[i] for i in good],
                "image": [im.tobytes() for im in images],
                "labels": [index.labels[i].tobytes() for i in good],
                "path": [index.paths[i] for i in good],
                "labeled": [bool(index.labeled[i]) for i in good],
            },
            schema=SCHEMA,
        )
        split_dir.mkdir(exist_ok=True)
        name = f"{split}/part-{len(files):05d}.parquet"
        # Row groups of about one real image (ROW_GROUP_BYTES): a fit reads its labeled rows' groups only.
        # Statistics of the id column only: with one row per group they hold the ids in the footer.
        pq.write_table(
            table, out / name, row_group_size=max(1, ROW_GROUP_BYTES // images[0].nbytes), write_statistics=["id"]
        )
        files.append(name)
        file_rows.append(len(good))
        kept.extend(good)
    return files, np.array(kept, dtype=np.int64), problems, file_rows


def _load_resized(reader: ArchiveReader, path: str, size: int) -> tuple[np.ndarray | None, Problem | None]:
    """Load one image and resize it to uint8 [size, size, B], or say why it cannot be used."""
    try:
        image = reader.load_image(path)
    except DatasetError as err:
        return None, (err.problems[0] if err.problems else (path, str(err)))
    h, w, _ = image.shape
    if max(h, w) > MAX_ASPECT * min(h, w):
        return None, (path, f"is {h}x{w} px: too far from square to resize to {size}x{size} without distortion")
    return resize(image, size), None


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [H, W, B] to uint8 [size, size, B], bilinear (antialiased when shrinking)."""
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    out = np.empty((size, size, image.shape[2]), dtype=np.uint8)
    for b in range(image.shape[2]):
        out[..., b] = np.asarray(Image.fromarray(image[..., b]).resize((size, size), Image.BILINEAR))
    return out


def _write_quarantine(path: Path, problems: Sequence[Problem]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    writer.writerows(problems)
    path.write_text(buf.getvalue())


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` to ``out_dir``, replacing an existing ``out_dir``."""
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


# -- reading -----------------------------------------------------------------------


def decode_batch(batch: Any, manifest: Manifest) -> dict[str, np.ndarray]:
    """Turn shard rows into arrays.

    batch: a column dict as Ray Data's ``map_batches(batch_format="numpy")`` gives
    (binary columns are object arrays of bytes), a dict of pyarrow arrays or
    lists, or a pyarrow Table / RecordBatch.
    Returns {"id": str [N], "image": uint8 [N, H, W, B], "labels": uint8 [N, C]}.
    """
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        batch = {name: batch.column(name) for name in ("id", "image", "labels")}
    missing = [k for k in ("id", "image", "labels") if k not in batch]
    if missing:
        raise DatasetError(
            f"A shard batch lacks the columns {missing}; it holds {sorted(batch)}. Fix: read the shards written by `raydal prepare`."
        )
    ids = _strings(batch["id"])
    images = _fixed_bytes(batch["image"], int(np.prod(manifest.image_shape)), "image", ids)
    labels = _fixed_bytes(batch["labels"], manifest.num_classes, "labels", ids)
    return {
        "id": ids,
        "image": images.reshape(len(ids), *manifest.image_shape),
        "labels": labels.reshape(len(ids), manifest.num_classes),
    }


def _strings(column: Any) -> np.ndarray:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = column.to_pylist()
    return np.asarray([str(v) for v in column], dtype=str) if len(column) else np.array([], dtype=str)


def _fixed_bytes(column: Any, width: int, name: str, ids: np.ndarray) -> np.ndarray:
    """Concatenate a binary column whose every value is ``width`` bytes: writable uint8 [N * width]."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
        lengths = pc.binary_length(column).to_numpy(zero_copy_only=False)
        _check_widths(lengths, width, name, ids)
        if len(column):  # (nulls were refused by the width check)
            # Zero-copy view of the values buffer, then one copy out of Arrow's memory.
            offset_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
            offsets = np.frombuffer(column.buffers()[1], dtype=offset_type)[column.offset :]
            data = np.frombuffer(column.buffers()[2], dtype=np.uint8)
            return data[offsets[0] : offsets[0] + len(column) * width].copy()
        values = column.to_pylist()
    else:
        values = list(column)
        lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
        _check_widths(lengths, width, name, ids)
    return np.frombuffer(bytearray().join(values), dtype=np.uint8)


def _check_widths(lengths: np.ndarray, width: int, name: str, ids: np.ndarray) -> None:
    bad = np.flatnonzero(lengths != width)
    if bad.size:
        raise DatasetError(
            f"Shard column {name!r} holds values of the wrong length for the manifest "
            f"(expected {width} bytes). Fix: prepare the shards again.",
            [(str(ids[i]), f"{lengths[i]} bytes") for i in bad],
        )


def iter_batches(
    manifest: Manifest,
    split: str,
    batch_size: int,
    ids: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield decoded batches (see ``decode_batch``) of ``split``, in shard order.

    ids: keep only these ids; exclude: drop these ids. Ids not in the split are
    ignored. Every batch holds ``batch_size`` rows except the last.
    """
    check_value(batch_size, "batch_size", "iter_batches", Interval(int, 1))
    keep = None if ids is None else pa.array(list(ids), pa.string())
    drop = None if exclude is None else pa.array(list(exclude), pa.string())

    def tables() -> Iterator[pa.Table]:
        for path in manifest.split_files(split):
            table = read_parquet(path, columns=["id", "image", "labels"])
            if keep is not None:
                table = table.filter(pc.is_in(table["id"], value_set=keep))
            if drop is not None:
                table = table.filter(pc.invert(pc.is_in(table["id"], value_set=drop)))
            yield table

    yield from rebatch(tables(), batch_size, manifest)


def rebatch(tables: Iterable[pa.Table], batch_size: int, manifest: Manifest) -> Iterator[dict[str, np.ndarray]]:
    """Decoded batches of exactly ``batch_size`` rows (the last may be smaller) over ``tables``, in order."""
    pending: list[pa.Table] = []
    n_pending = 0
    for table in tables:
        pending.append(table)
        n_pending += table.num_rows
        while n_pending >= batch_size:
            merged = pa.concat_tables(pending)
            yield decode_batch(merged.slice(0, batch_size), manifest)
            pending, n_pending = [merged.slice(batch_size)], n_pending - batch_size
    if n_pending:
        yield decode_batch(pa.concat_tables(pending), manifest)


def open_shard(location: str) -> pq.ParquetFile:
    """A shard file for row-group reads: local path or storage URI.

    On object storage the reads are pre-buffered: the column chunks of the row
    groups asked for in one ``read_row_groups`` call are fetched as coalesced
    ranges, concurrently, instead of one request per column chunk in turn.
    """
    if not is_uri(location):
        return parquet_file(location)
    fs, path = filesystem(location)
    return pq.ParquetFile(path, filesystem=fs, pre_buffer=True)


def file_ids(pf: pq.ParquetFile) -> pa.Array:
    """The ids of a shard file, in row order.

    Where every row group holds one row (``raydal prepare`` at real image
    sizes) its id column's statistics are that row's id, so the footer alone
    answers: one request per file on object storage instead of one per row.
    Otherwise (small images, older shard sets) the id column is read.
    """
    meta = pf.metadata
    column = meta.schema.names.index("id")
    ids = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = group.column(column).statistics
        if group.num_rows != 1 or stats is None or not stats.has_min_max or stats.min != stats.max:
            return pa.array(pf.read(columns=["id"], use_threads=False)["id"].combine_chunks(), pa.string())
        ids.append(stats.min)
    return pa.array(ids, pa.string())


def read_ids(manifest: Manifest, split: str, labeled: bool | None = None) -> np.ndarray:
    """The ids of ``split`` in shard order, str [N].

    labeled: None: every row; True: only rows with archive labels; False: only
    images without labels (pool images for annotators).
    Reads the files' footers where they hold the ids (``file_ids``: one request
    per file on object storage), and the ``labeled`` column only where the
    manifest says the split has images without labels.
    """
    if labeled is not None and manifest.unlabeled.get(split) == 0:  # every row of the split is labeled
        if labeled is False:
            return np.array([], dtype=str)
        labeled = None
    index = manifest.ids_file(split)
    if index is not None:  # one small file (prepare's id index)
        table = read_parquet(index, columns=["id"] if labeled is None else ["id", "labeled"])
        if labeled is not None:
            table = table.filter(table["labeled"] if labeled else pc.invert(table["labeled"]))
        return _strings(table["id"])
    chunks = []
    for path in manifest.split_files(split):
        file = open_shard(path)
        if labeled is None:
            chunks.append(file_ids(file))
            continue
        has_labeled = "labeled" in file.schema_arrow.names
        table = file.read(columns=["id", "labeled"] if has_labeled else ["id"])
        if has_labeled:
            table = table.filter(table["labeled"] if labeled else pc.invert(table["labeled"]))
        elif labeled is False:  # written before the column existed: every row is labeled
            table = table.slice(0, 0)
        chunks += table["id"].chunks
    return _strings(pa.chunked_array(chunks, pa.string()))


def read_split(manifest: Manifest, split: str, ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """All of ``split`` decoded in one dict (see ``decode_batch``).

    ids: only these rows, in the order given; every id must be in the split
    (``DatasetError`` lists the missing ones).
    """
    tables = [read_parquet(path, columns=["id", "image", "labels"]) for path in manifest.split_files(split)]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table().select(["id", "image", "labels"])
    if ids is not None:
        ids = [str(i) for i in ids]
        position = {v: k for k, v in enumerate(table["id"].to_pylist())}
        missing = [i for i in ids if i not in position]
        if missing:
            raise DatasetError(
                f"{len(missing)} requested ids are not in the {split!r} split of {manifest.root}. "
                f"Fix: ask for ids of that split (see its manifest).",
                [(i, f"not in split {split!r}") for i in missing],
            )
        table = table.take(pa.array([position[i] for i in ids], pa.int64()))
    return decode_batch(table, manifest)


def override_labels(batch: dict[str, np.ndarray], overrides: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Replace archive labels by annotators' labels (human in the loop).

    batch: decoded ``{"id": [N], "labels": uint8 [N, C], ...}``; overrides: id ->
    class indices. Rows without an override keep the archive's labels.
    """
    rows = [i for i, sid in enumerate(batch["id"]) if sid in overrides]
    if not rows:
        return batch
    labels = batch["labels"].copy()
    for i in rows:
        labels[i] = 0
        labels[i, list(overrides[batch["id"][i]])] = 1
    return {**batch, "labels": labels}
