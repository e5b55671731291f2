"""Fake BigEarthNet v2 archive in the published layout.

Writes ``BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif`` for the
12 bands (uint16 reflectance x 10000, single band, EPSG:32632; 10 m bands
``size`` px, 20 m bands size/2, 60 m bands size/6) and ``metadata.parquet``
with the reBEN columns (patch_id, labels, split, country, s1_name,
contains_seasonal_snow, contains_cloud_or_shadow) and a 50/25/25
train/validation/test split like reBEN's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raydal.data.bigearthnet import BigEarthNetReader as Reader
from raydal.data.synth._tiff import north_up, write_tif
from raydal.data.synth.painter import paint_chunks, sample_grades, sample_labels
from raydal.exceptions import ConfigError

DEFAULT_N = 1000
DEFAULT_SIZE = 120
#: Share of patches per class, imbalanced like reBEN (arable land and forests
#: common; beaches and coastal wetlands rare).
PRIORS = (
    0.13, 0.02, 0.39, 0.03, 0.19, 0.18, 0.22, 0.05, 0.27, 0.36,
    0.33, 0.02, 0.03, 0.29, 0.005, 0.04, 0.005, 0.12, 0.14,
)  # fmt: skip
TILES = {"T29SND": "Portugal", "T32TMT": "Switzerland", "T33UUP": "Austria", "T34VER": "Finland", "T35VNL": "Lithuania"}
SPLIT_SHARES = {"train": 0.5, "validation": 0.25, "test": 0.25}
PATCHES_PER_PRODUCT = 40
#: Painted uint8 values map to digital numbers as v * DN_PER_LEVEL, so the
#: reader's default scaling (clip at 4000) gives the painted values back.
DN_PER_LEVEL = 4000 / 255


def write_archive(out_dir: Path, n: int | None, size: int | None, rng: np.random.Generator, difficulty: float) -> None:
    """Write a fake archive of ``n`` patches with 10 m bands of ``size`` x ``size`` px into ``out_dir``."""
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    if size % 6:
        raise ConfigError(f"The 'size' parameter of the bigearthnet generator must be a multiple of 6 (60 m bands are size/6 px). Got {size} instead.")
    labels = sample_labels(n, np.array(PRIORS), rng)
    patch_ids, s1_names, countries = _names(n, rng)
    origins = np.stack([rng.uniform(300_000, 700_000, n), rng.uniform(4_000_000, 7_000_000, n)], 1)
    products = np.arange(n) // PATCHES_PER_PRODUCT  # patches of one product are near-duplicates
    grades = sample_grades(labels, rng, difficulty)
    chunks = paint_chunks(labels, (size, size), len(Reader.band_names), rng, difficulty, groups=products, grades=grades)
    for start, images in chunks:
        for i, image in enumerate(images, start):
            folder = out_dir / Reader.s2_dir / _product(patch_ids[i]) / patch_ids[i]
            dn = image.astype(np.float32) * DN_PER_LEVEL
            for k, band in enumerate(Reader.band_names):
                factor = Reader.resolution[band] // 10
                pixels = dn[..., k].reshape(size // factor, factor, size // factor, factor).mean((1, 3))
                write_tif(
                    folder / f"{patch_ids[i]}_{band}.tif",
                    np.rint(pixels)[..., None].astype(np.uint16),
                    crs="EPSG:32632",
                    transform=north_up(*origins[i], Reader.resolution[band]),
                )

    import pyarrow as pa
    import pyarrow.parquet as pq

    splits = rng.choice(list(SPLIT_SHARES), size=n, p=list(SPLIT_SHARES.values()))
    table = pa.table(
        {
            "patch_id": patch_ids,
            "labels": [[Reader.classes[c] for c in np.flatnonzero(row)] for row in labels],
            "split": splits.tolist(),
            "country": countries,
            "s1_name": s1_names,
            "contains_seasonal_snow": np.zeros(n, dtype=bool),
            "contains_cloud_or_shadow": np.zeros(n, dtype=bool),
        }
    )
    pq.write_table(table, out_dir / Reader.metadata_file)


def _names(n: int, rng: np.random.Generator) -> tuple[list[str], list[str], list[str]]:
    """reBEN-style patch ids (``<product>_<row>_<col>``), S1 names and countries."""
    patch_ids, s1_names, countries = [], [], []
    tiles = list(TILES)
    for p in range(-(-n // PATCHES_PER_PRODUCT)):
        tile = tiles[rng.integers(len(tiles))]
        day = np.datetime64("2017-06-01") + rng.integers(0, 450)
        stamp = f"{str(day).replace('-', '')}T{rng.integers(95000, 115959):06d}"
        product = f"S2{'AB'[rng.integers(2)]}_MSIL2A_{stamp}_N9999_R{rng.integers(1, 144):03d}_{tile}"
        count = min(PATCHES_PER_PRODUCT, n - len(patch_ids))
        for cell in rng.choice(100 * 100, size=count, replace=False):
            row, col = divmod(int(cell), 100)
            patch_ids.append(f"{product}_{row:02d}_{col:02d}")
            s1_names.append(f"S1A_IW_GRDH_1SDV_{stamp}_{tile[1:]}_{row:02d}_{col:02d}")
            countries.append(TILES[tile])
    return patch_ids, s1_names, countries


def _product(patch_id: str) -> str:
    return "_".join(patch_id.split("_")[:-2])
