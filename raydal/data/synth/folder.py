"""A small example of your own archive: GeoTIFFs in a folder tree and a half-empty labels CSV.

Writes::

    <out>/images/<region>/patch_NNNN.tif   4-band (R, G, B, NIR) GeoTIFFs, EPSG:32632,
                                           float32 reflectance (0..~0.4) or uint16 (x 10000)
    <out>/labels.csv                       id,labels: every image has a row, but only a
                                           share (``labeled_share``) has class names
    <out>/classes.txt                      the class names, one a line

Pixels are learnable (``painter``): each class paints its own colour and
texture. What ``raydal prepare folder`` does with it is in docs/data.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from raydal.data.synth import register_generator
from raydal.data.synth._tiff import north_up, write_tif
from raydal.data.synth.painter import paint_chunks, sample_labels
from raydal.exceptions import ConfigError

DEFAULT_N = 200
DEFAULT_SIZE = 64
CLASSES = ("water", "forest", "cropland", "built-up", "grassland", "bare soil")
PRIORS = (0.25, 0.35, 0.4, 0.2, 0.3, 0.1)
BAND_NAMES = ("R", "G", "B", "NIR")
REGIONS = ("north", "south", "east")
DTYPES = ("float32", "uint16")
#: uint8 painter value -> reflectance: 255 is reflectance 0.4.
REFLECTANCE_PER_STEP = 0.4 / 255


@register_generator("folder")
def write_archive(
    out_dir: Path,
    n: int | None,
    size: int | None,
    rng: np.random.Generator,
    difficulty: float,
    dtype: str = "float32",
    labeled_share: float = 0.5,
) -> None:
    """Write ``n`` GeoTIFFs of ``size`` px and a labels CSV with ``labeled_share`` of the rows filled."""
    if dtype not in DTYPES:
        raise ConfigError(
            f"The 'dtype' parameter of the folder generator must be one of {DTYPES}. Got {dtype!r} instead."
        )
    if not 0 <= labeled_share <= 1:
        raise ConfigError(
            f"The 'labeled_share' parameter of the folder generator must be in [0, 1]. Got {labeled_share!r} instead."
        )
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    labels = sample_labels(n, np.array(PRIORS), rng)
    labeled = np.zeros(n, dtype=bool)
    labeled[rng.permutation(n)[: round(labeled_share * n)]] = True
    ids = [f"patch_{i:04d}" for i in range(n)]
    for start, images in paint_chunks(labels, (size, size), len(BAND_NAMES), rng, difficulty):
        for i, image in enumerate(images, start):
            reflectance = image.astype(np.float32) * REFLECTANCE_PER_STEP
            data = reflectance if dtype == "float32" else np.rint(reflectance * 10000).astype(np.uint16)
            path = out_dir / "images" / REGIONS[i % len(REGIONS)] / f"{ids[i]}.tif"
            write_tif(path, data, crs="EPSG:32632", transform=north_up(500_000 + 10 * size * i, 5_600_000, 10.0))
            _describe_bands(path, BAND_NAMES)

    with open(out_dir / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "labels"])
        for sid, row, known in zip(ids, labels, labeled):
            writer.writerow([sid, ";".join(CLASSES[c] for c in np.flatnonzero(row)) if known else ""])
    (out_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n")


def _describe_bands(path: Path, names: tuple[str, ...]) -> None:
    """Name the bands in the GeoTIFF (the folder reader takes band names from there)."""
    import rasterio

    with rasterio.open(path, "r+") as dst:
        dst.descriptions = names
