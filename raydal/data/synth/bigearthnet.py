"""Fake BigEarthNet archives in the published layouts: v2 (reBEN, the default) and v1.

v2 writes ``BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif`` for the
12 bands (uint16 reflectance x 10000, single band, EPSG:32632; 10 m bands
``size`` px, 20 m bands size/2, 60 m bands size/6) and ``metadata.parquet``
with the reBEN columns (patch_id, labels, split, country, s1_name,
contains_seasonal_snow, contains_cloud_or_shadow) and a 50/25/25
train/validation/test split like reBEN's.

v1 (``version="v1"``) writes ``BigEarthNet-v1.0/<patch>/<patch>_<band>.tif`` (the
same bands and sizes, in the UTM zone of each patch's tile) and
``<patch>_labels_metadata.json`` (labels in the 43-class nomenclature,
coordinates, projection, tile_source, acquisition_date), the snow and
cloud/shadow lists, and train/val/test.csv over the patches the 19-class
convention keeps, split 52/24/24 like the published lists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from raydal.data.bigearthnet import CLASSES_43, NOMENCLATURE_19
from raydal.data.bigearthnet import BigEarthNetReader as Reader
from raydal.data.synth import register_generator
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


@register_generator("bigearthnet")
def write_archive(
    out_dir: Path, n: int | None, size: int | None, rng: np.random.Generator, difficulty: float, version: str = "v2"
) -> None:
    """Write a fake archive of ``n`` patches with 10 m bands of ``size`` x ``size`` px into ``out_dir``,
    in the ``version`` ("v2" or "v1") layout."""
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    if size % 6:
        raise ConfigError(
            f"The 'size' parameter of the bigearthnet generator must be a multiple of 6 (60 m bands are size/6 px). Got {size} instead."
        )
    if version == "v1":
        _write_v1(out_dir, n, size, rng, difficulty)
        return
    if version != "v2":
        raise ConfigError(
            f"The 'version' option of the bigearthnet generator must be 'v1' or 'v2'. Got {version!r} instead."
        )
    labels = sample_labels(n, np.array(PRIORS), rng)
    patch_ids, s1_names, countries = _names(n, rng)
    origins = np.stack([rng.uniform(300_000, 700_000, n), rng.uniform(4_000_000, 7_000_000, n)], 1)
    products = np.arange(n) // PATCHES_PER_PRODUCT  # patches of one product are near-duplicates
    grades = sample_grades(labels, rng, difficulty)
    chunks = paint_chunks(labels, (size, size), len(Reader.band_names), rng, difficulty, groups=products, grades=grades)
    for start, images in chunks:
        for i, image in enumerate(images, start):
            _write_bands(
                out_dir / Reader.s2_dir / _product(patch_ids[i]) / patch_ids[i], image, "EPSG:32632", origins[i]
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


#: v1: share of patches per 43-class label, in ``CLASSES_43`` order: the per-class patch counts
#: of BigEarthNet v1 (Sumbul et al., IGARSS 2019) over its 590,326 patches, rounded, as raydal
#: had them from memory (mixed and coniferous forest, non-irrigated arable land ~0.35; ports,
#: salines and burnt areas ~0.001).
PRIORS_43 = (
    0.018, 0.118, 0.022, 0.006, 0.001, 0.002, 0.008, 0.002, 0.002, 0.003, 0.009,
    0.333, 0.023, 0.006, 0.016, 0.008, 0.021, 0.175, 0.012, 0.183, 0.249, 0.052,
    0.256, 0.359, 0.368, 0.022, 0.010, 0.019, 0.294, 0.003, 0.006, 0.003, 0.001,
    0.011, 0.039, 0.003, 0.001, 0.002, 0.018, 0.142, 0.003, 0.002, 0.138,
)  # fmt: skip
#: v1: tile -> EPSG code of its UTM zone (the band files are in the tile's zone).
V1_TILES = {"T29SND": 32629, "T32TMT": 32632, "T33UUP": 32633, "T34VER": 32634, "T35VNL": 32635}
#: v1: shares of patches in the published snow and cloud/shadow lists (61,707 and 9,280 of
#: 590,326 in the real archive; cloud raised from 1.6% so that small copies have some).
SNOW_SHARE, CLOUD_SHARE = 0.10, 0.04
#: v1: the published 19-class split lists' shares (269,695 / 123,723 / 125,866 patches).
V1_SPLIT_SHARES = {"train": 0.52, "val": 0.24, "test": 0.24}


def _write_v1(out_dir: Path, n: int, size: int, rng: np.random.Generator, difficulty: float) -> None:
    """The v1 layout (module docstring): band files, one labels JSON per patch, the lists."""
    labels = sample_labels(n, np.array(PRIORS_43), rng)
    names, tiles, stamps = _v1_names(n, rng)
    origins = np.stack([rng.uniform(300_000, 700_000, n), rng.uniform(4_000_000, 7_000_000, n)], 1)
    products = np.arange(n) // PATCHES_PER_PRODUCT
    grades = sample_grades(labels, rng, difficulty)
    chunks = paint_chunks(labels, (size, size), len(Reader.band_names), rng, difficulty, groups=products, grades=grades)
    for start, images in chunks:
        for i, image in enumerate(images, start):
            folder = out_dir / Reader.v1_dir / names[i]
            epsg = V1_TILES[tiles[i]]
            _write_bands(folder, image, f"EPSG:{epsg}", origins[i])
            x0, y0 = (float(v) for v in origins[i])
            metadata = {
                "labels": [CLASSES_43[c] for c in np.flatnonzero(labels[i])],
                "coordinates": {"ulx": x0, "uly": y0, "lrx": x0 + 1200.0, "lry": y0 - 1200.0},
                "projection": _wkt(epsg),
                "tile_source": f"{stamps[i][0]}_N0205_R{stamps[i][2]:03d}_{tiles[i]}_{stamps[i][1]}",
                "acquisition_date": f"{stamps[i][1][:4]}-{stamps[i][1][4:6]}-{stamps[i][1][6:8]} "
                f"{stamps[i][1][9:11]}:{stamps[i][1][11:13]}:{stamps[i][1][13:15]}",
            }
            (folder / f"{names[i]}{Reader.v1_labels_suffix}").write_text(json.dumps(metadata))

    draw = rng.random(n)
    snow, cloud = draw < SNOW_SHARE, (draw >= SNOW_SHARE) & (draw < SNOW_SHARE + CLOUD_SHARE)
    mapped = np.array([CLASSES_43.index(c) for olds in NOMENCLATURE_19.values() for c in olds])
    kept = np.flatnonzero(~snow & ~cloud & labels[:, mapped].any(1))
    splits = rng.choice(list(V1_SPLIT_SHARES), size=kept.size, p=list(V1_SPLIT_SHARES.values()))
    lists = {file: np.flatnonzero(rows) for file, rows in zip(Reader.v1_drop_lists, (snow, cloud))}
    lists |= {f"{split}.csv": kept[splits == split] for split in V1_SPLIT_SHARES}
    for file, rows in lists.items():
        (out_dir / file).write_text("".join(f"{names[i]}\n" for i in rows))


def _v1_names(n: int, rng: np.random.Generator) -> tuple[list[str], list[str], list[tuple[str, str, int]]]:
    """v1 patch names (``<S2 product short name>_<row>_<col>``, e.g. S2A_MSIL2A_20170613T101031_45_61),
    their tiles, and per patch (L1C product name, sensing time, relative orbit)."""
    names, tiles, stamps = [], [], []
    for p in range(-(-n // PATCHES_PER_PRODUCT)):
        tile = list(V1_TILES)[rng.integers(len(V1_TILES))]
        day = np.datetime64("2017-06-01") + rng.integers(0, 365)
        stamp = f"{str(day).replace('-', '')}T{rng.integers(95000, 115959):06d}"
        sat, orbit = f"S2{'AB'[rng.integers(2)]}", int(rng.integers(1, 144))
        count = min(PATCHES_PER_PRODUCT, n - len(names))
        for cell in rng.choice(100 * 100, size=count, replace=False):
            row, col = divmod(int(cell), 100)
            names.append(f"{sat}_MSIL2A_{stamp}_{row}_{col}")
            tiles.append(tile)
            stamps.append((f"{sat}_MSIL1C_{stamp}", stamp, orbit))
    return names, tiles, stamps


def _wkt(epsg: int) -> str:
    """The WKT of a CRS, as v1's ``projection`` field holds it."""
    from rasterio.crs import CRS

    return CRS.from_epsg(epsg).to_wkt()


def _write_bands(folder: Path, image: np.ndarray, crs: str, origin: np.ndarray) -> None:
    """The 12 band files of one patch from its painted uint8 [size, size, 12] image (``Reader.band_names``
    order): digital numbers, each band averaged down to its resolution."""
    size = image.shape[0]
    dn = image.astype(np.float32) * DN_PER_LEVEL
    for k, band in enumerate(Reader.band_names):
        factor = Reader.resolution[band] // 10
        pixels = dn[..., k].reshape(size // factor, factor, size // factor, factor).mean((1, 3))
        write_tif(
            folder / f"{folder.name}_{band}.tif",
            np.rint(pixels)[..., None].astype(np.uint16),
            crs=crs,
            transform=north_up(*origin, Reader.resolution[band]),
        )


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
