"""Small shared helpers: devices, seeding, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from raydal.constants import ENV_CACHE, ENV_DEVICE


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
                data = data[len(data) // 2:]
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


# -- cluster storage (pyarrow filesystems) -------------------------------------------


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` locations (s3://, gs://, file://), False for plain paths."""
    return "://" in str(path)


def filesystem(uri: str):
    """``(pyarrow FileSystem, path inside it)`` for a storage URI."""
    import pyarrow.fs as pafs

    from raydal.exceptions import StateError

    try:
        return pafs.FileSystem.from_uri(str(uri))
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError variants
        raise StateError(f"Cannot open {uri}: {err}. Check the URI and the storage credentials.") from err


def upload_dir(local: str | os.PathLike, uri: str) -> str:
    """Copy the folder ``local`` to ``uri`` (a storage URI); returns ``uri``."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(Path(local).resolve()), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    return uri


def local_dir(location: str | os.PathLike) -> Path:
    """A local folder for ``location``: itself when local, else a cached download of the URI.

    Downloads land in ``~/.cache/raydal/<hash>`` (``$RAYDAL_CACHE`` overrides) and are
    renamed into place when complete, so concurrent readers never see half a folder.
    """
    if not is_uri(location):
        return Path(location)
    import hashlib
    import shutil

    import pyarrow.fs as pafs

    cache = Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "raydal"))
    target = cache / hashlib.sha1(str(location).encode()).hexdigest()[:20]
    if target.is_dir():
        return target
    fs, path = filesystem(str(location))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache))
    try:
        pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        os.replace(tmp, target)
    except OSError:
        if target.is_dir():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
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
