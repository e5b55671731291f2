"""Small shared helpers: devices, seeding, atomic writes, storage (local paths and URIs)."""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raydal.constants import ENV_CACHE, ENV_DEVICE, STORAGE_ENV


def default_device() -> "torch.device":  # noqa: F821
    """CUDA when present (or ``$RAYDAL_DEVICE``), else CPU."""
    import torch

    forced = os.environ.get(ENV_DEVICE)
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy Generator from a seed or an existing Generator (never global state)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fault: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    Writes a temp file in the same folder, fsyncs it, renames it over ``path``, then
    fsyncs the folder (the rename itself survives a power cut). ``fault``: prefix of
    the fault-injection points ``FAULT:start``, ``FAULT:mid`` (half the temp file
    written) and ``FAULT:end`` (``raydal.faults``).
    """
    from raydal.faults import fault_point

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if fault:
                fault_point(f"{fault}:start")
                f.write(data[: len(data) // 2])
                f.flush()
                fault_point(f"{fault}:mid")
                data = data[len(data) // 2 :]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if fault:
        fault_point(f"{fault}:end")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@functools.cache
def import_submodules(package: str) -> None:
    """Import every module of ``package`` whose name has no leading underscore, once.

    How the light registries find their entries (datasets, generators, strategies): each
    module registers itself with a decorator, so a new one is its module alone. Registries
    whose entries import torch or Ray (backbones, executors) list them by ``"module:name"``.
    """
    import importlib
    import pkgutil

    for found in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not found.name.startswith("_") and not found.ispkg:
            importlib.import_module(f"{package}.{found.name}")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, so that it writes as strict JSON
    (``json.dumps(..., allow_nan=False)``; a bare ``NaN`` is not JSON and other languages' parsers refuse it)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_strict_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented strict JSON: NaN and infinities become null."""
    text = json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


# -- cluster storage (pyarrow filesystems) -------------------------------------------


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` locations (s3://, gs://, file://), False for plain paths."""
    return "://" in str(path)


def filesystem(uri: str):
    """``(pyarrow FileSystem, path inside it)`` for a storage URI.

    S3 is configured by the standard AWS environment (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), which
    pyarrow reads itself. Bucket stores keep one FileSystem per bucket and
    environment per process: opening one can cost a request (S3 resolves the
    bucket's region).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(str(uri))
    if parts.scheme not in _BUCKET_SCHEMES:
        return _open_filesystem(str(uri))
    fs, bucket = _bucket_filesystem(f"{parts.scheme}://{parts.netloc}", _storage_env())
    inner = parts.path.strip("/")
    return fs, f"{bucket}/{inner}" if inner else bucket


_BUCKET_SCHEMES = ("s3", "gs", "gcs")


def _storage_env() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in STORAGE_ENV)


@functools.lru_cache(maxsize=64)
def _bucket_filesystem(root: str, env: tuple[str | None, ...]):
    """``(FileSystem, bucket)`` of ``scheme://bucket``, once per bucket and storage environment ``env``."""
    fs, bucket = _open_filesystem(root)
    return fs, bucket.rstrip("/")


def _open_filesystem(uri: str):
    import pyarrow.fs as pafs

    from raydal.exceptions import StateError

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError variants
        raise StateError(f"Cannot open {uri}: {err}. Check the URI and the storage credentials.") from err


def normal_location(location: str | os.PathLike) -> str:
    """``location`` in one spelling, for comparing and storing: a URI without its trailing ``/``,
    a local path expanded and resolved."""
    if is_uri(location):
        return str(location).rstrip("/")
    return str(Path(location).expanduser().resolve())


def join_location(root: str | os.PathLike, *parts: str) -> str:
    """``root/part/...`` for a local folder (as a str) or a storage URI (kept a URI)."""
    if is_uri(root):
        return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root).joinpath(*parts))


def file_exists(location: str | os.PathLike) -> bool:
    """True when ``location`` (a local path or a storage URI) is an existing file."""
    if not is_uri(location):
        return os.path.isfile(location)
    import pyarrow.fs as pafs

    fs, path = filesystem(str(location))
    return fs.get_file_info(path).type == pafs.FileType.File


def open_input_file(location: str | os.PathLike):
    """A random-access pyarrow file for a local path or a storage URI (close it, or use ``with``)."""
    if not is_uri(location):
        import pyarrow as pa

        return pa.OSFile(str(location), "rb")
    fs, path = filesystem(str(location))
    return fs.open_input_file(path)


def read_bytes(location: str | os.PathLike) -> bytes:
    """The whole content of a local file or a storage URI."""
    with open_input_file(location) as f:
        return f.read()


def parquet_file(location: str | os.PathLike) -> "pq.ParquetFile":  # noqa: F821
    """``pyarrow.parquet.ParquetFile`` of a local path or storage URI.

    Only the footer is read here; ``read_row_group(i, columns=...)`` then fetches
    just that row group's columns (ranged reads on object storage).
    """
    import pyarrow.parquet as pq

    if not is_uri(location):
        return pq.ParquetFile(str(location))
    fs, path = filesystem(str(location))
    return pq.ParquetFile(path, filesystem=fs)


def read_parquet(location: str | os.PathLike, columns: Sequence[str] | None = None, **kwargs: Any) -> "pa.Table":  # noqa: F821
    """``pyarrow.parquet.read_table`` of a local path or storage URI (every Parquet read of raydal).

    columns: read only these columns; kwargs go to ``read_table`` (e.g. ``filters``).
    """
    import pyarrow.parquet as pq

    if not is_uri(location):
        return pq.read_table(str(location), columns=columns, **kwargs)
    fs, path = filesystem(str(location))
    return pq.read_table(path, columns=columns, filesystem=fs, **kwargs)


def upload_dir(local: str | os.PathLike, uri: str) -> str:
    """Copy the folder ``local`` to ``uri`` (a storage URI); returns ``uri``."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(
        str(Path(local).resolve()), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )
    return uri


def local_dir(location: str | os.PathLike) -> Path:
    """A local folder for ``location``: itself when local, else a cached download of the URI.

    Downloads land in ``~/.cache/raydal/<hash>`` (``$RAYDAL_CACHE`` overrides), keyed by the
    URI and the size and modification time of every object under it (one listing), so a
    folder uploaded again to the same URI (a resumed run retraining an iteration) is
    downloaded again, never served stale. They are renamed into place when complete, so
    concurrent readers never see half a folder. A URI with nothing under it is returned as
    an empty folder (the caller says what it missed).
    """
    if not is_uri(location):
        return Path(location)
    import hashlib
    import shutil

    import pyarrow.fs as pafs

    fs, path = filesystem(str(location))
    files = sorted(
        (info.path, info.size, info.mtime_ns)
        for info in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        if info.type == pafs.FileType.File
    )
    stamp = hashlib.sha1(repr((str(location), files)).encode()).hexdigest()[:20]
    cache = Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "raydal"))
    target = cache / stamp
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache))
    try:
        if files:
            pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():  # else another process finished first
            raise
    return target


def dataclass_from_dict(cls: type, data: dict[str, Any]):
    """``cls(**data)``, refusing unknown keys with a message that lists the valid fields."""
    import dataclasses

    from raydal.exceptions import ConfigError

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Unknown {cls.__name__} field(s) {unknown}. Valid fields: {sorted(known)}.")
    return cls(**data)
