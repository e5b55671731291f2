"""Writing GeoTIFFs with explicit rasterio profiles (rasterio imported lazily)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np


def write_tif(path: Path, image: np.ndarray, **profile: Any) -> None:
    """Write image [H, W, B] to ``path`` as a GeoTIFF; ``profile`` adds crs, transform, nodata."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, b = image.shape
    full = {"driver": "GTiff", "height": h, "width": w, "count": b, "dtype": image.dtype.name} | profile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **full) as dst:
            dst.write(np.moveaxis(image, -1, 0))
