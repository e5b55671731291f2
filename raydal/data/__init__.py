"""Archives in: one reader module per dataset behind a registry, fake-archive
generators (``raydal.data.synth``) and Parquet shards (``raydal.data.shards``).

A new dataset is one module here with an ``ArchiveReader`` subclass decorated with
``@register_dataset`` (every module of this package is imported with it) and its
generator in ``raydal.data.synth`` (``@register_generator``): no list to edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from raydal.data.base import ArchiveIndex, ArchiveReader
from raydal.exceptions import ConfigError
from raydal.utils import import_submodules

_READERS: dict[str, type[ArchiveReader]] = {}

R = TypeVar("R", bound=type[ArchiveReader])


def register_dataset(cls: R) -> R:
    """Class decorator: make ``cls`` available to ``get_reader(cls.name, ...)``."""
    if cls.name in _READERS:
        raise ConfigError(f"A dataset named {cls.name!r} is already registered ({_READERS[cls.name]}).")
    _READERS[cls.name] = cls
    return cls


def list_datasets() -> list[str]:
    """Names of the registered archives, sorted."""
    return sorted(_READERS)


def reader_class(name: str) -> type[ArchiveReader]:
    """The reader class registered as ``name``; ConfigError listing the valid names otherwise."""
    try:
        return _READERS[name]
    except KeyError:
        raise ConfigError(f"The 'dataset' parameter must be one of {list_datasets()}. Got {name!r} instead.") from None


def get_reader(name: str, root: str | Path, **settings: Any) -> ArchiveReader:
    """A reader of the ``name`` archive in folder ``root`` (settings are per dataset)."""
    return reader_class(name)(root, **settings)


import_submodules(__name__)  # each reader module's @register_dataset

__all__ = [
    "ArchiveIndex",
    "ArchiveReader",
    "get_reader",
    "list_datasets",
    "reader_class",
    "register_dataset",
]
