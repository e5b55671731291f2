"""Fake archives in the published layouts, with learnable pixels (see ``painter``).

``synthesize(dataset, out_dir, n, size, seed)`` writes a copy that the real
readers index like the real archive: same folders, file-name patterns, rasterio
profiles and label schema. One module per dataset holds its generator, a function
decorated with ``@register_generator("<dataset>")``; every module of this package is
imported when it is (no list to edit), so a new generator is its module alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from raydal.exceptions import ConfigError
from raydal.utils import import_submodules
from raydal.utils import rng as make_rng

#: dataset name -> ``write(out_dir, n, size, rng, difficulty, **options)``.
_WRITERS: dict[str, Callable[..., None]] = {}

W = Callable[..., None]


def register_generator(name: str) -> Callable[[W], W]:
    """Function decorator: ``fn(out_dir, n, size, rng, difficulty, **options)`` writes a fake ``name``
    archive (``name`` as the reader's ``register_dataset`` names it)."""

    def add(fn: W) -> W:
        if name in _WRITERS and _WRITERS[name] is not fn:
            raise ConfigError(f"A generator for {name!r} is already registered ({_WRITERS[name].__module__}).")
        _WRITERS[name] = fn
        return fn

    return add


def list_generators() -> list[str]:
    """Datasets that have a fake-archive generator."""
    return sorted(_WRITERS)


def synthesize(
    dataset: str,
    out_dir: str | Path,
    n: int | None = None,
    size: int | None = None,
    seed: int = 0,
    difficulty: float = 0.3,
    **options: Any,
) -> Path:
    """Write a fake ``dataset`` archive into ``out_dir`` (created; must be empty) and return it.

    n: number of images (default per dataset: ucmerced 2100, treesatai 1000,
    bigearthnet 1000, folder 200). size: image side in pixels (default the real size: 256,
    304, 120; folder 64). difficulty in [0, 1]: 0 paints bold, clean label marks, 1 faint,
    small, noisy ones. options: per-dataset layout choices (treesatai:
    ``layout="aerial/60m"`` or ``"aerial_60m"``; folder: ``dtype="float32"`` or
    ``"uint16"``, ``labeled_share=0.5``; bigearthnet: ``version="v2"`` or ``"v1"``). The same arguments always write
    the same archive.
    """
    if dataset not in _WRITERS:
        raise ConfigError(f"The 'dataset' parameter must be one of {list_generators()}. Got {dataset!r} instead.")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ConfigError(f"The 'n' parameter must be an int >= 1 or None. Got {n!r} instead.")
    if size is not None and (not isinstance(size, int) or size < 8):
        raise ConfigError(f"The 'size' parameter must be an int >= 8 or None. Got {size!r} instead.")
    if not isinstance(difficulty, (int, float)) or not 0.0 <= difficulty <= 1.0:
        raise ConfigError(f"The 'difficulty' parameter must be a float in [0, 1]. Got {difficulty!r} instead.")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            f"The 'out_dir' of synthesize must be empty or absent. {out_dir} is not empty: choose a new folder."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    _WRITERS[dataset](out_dir, n, size, make_rng(seed), float(difficulty), **options)
    return out_dir


import_submodules(__name__)  # each module's @register_generator (helpers such as painter register nothing)
