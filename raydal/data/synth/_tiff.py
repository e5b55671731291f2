"""Writing GeoTIFFs with explicit rasterio profiles (rasterio imported lazily)."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np


def write_tif(path: Path, image: np.ndarray, **profile: Any) -> None:
    """Write image [H, W, B] to ``path`` as a GeoTIFF; ``profile`` adds crs, transform, nodata."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(profile.get("crs"), str):
        profile["crs"] = _crs(profile["crs"])
    h, w, b = image.shape
    full = {"driver": "GTiff", "height": h, "width": w, "count": b, "dtype": image.dtype.name} | profile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **full) as dst:
            dst.write(np.moveaxis(image, -1, 0))


@lru_cache(maxsize=8)
def _crs(name: str) -> "rasterio.crs.CRS":  # noqa: F821
    """Parse a CRS once: parsing costs as much as writing a small file."""
    from rasterio.crs import CRS

    return CRS.from_string(name)


def north_up(x0: float, y0: float, res: float) -> "affine.Affine":  # noqa: F821
    """The geotransform of a north-up grid with its top-left corner at (x0, y0), ``res`` m pixels."""
    from rasterio.transform import Affine

    return Affine(res, 0.0, x0, 0.0, -res, y0)
