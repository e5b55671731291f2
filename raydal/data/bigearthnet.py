"""BigEarthNet v2 (reBEN): Sentinel-2 patches of 1.2 km, 19 land-cover labels.

Layout (see /work/shared/docs/datasets.md)::

    <root>/BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif
    <root>/metadata.parquet      patch_id, s1_name, split (train/validation/test), labels

with ``product = '_'.join(patch_id.split('_')[:-2])``. Each band is a uint16
single-band GeoTIFF at its native resolution: 10 m bands 120x120 px, 20 m
bands 60x60, 60 m bands 20x20; all are resampled (bilinear) to the 10 m grid.

Scaling to uint8 (recorded in every shard manifest): digital numbers are
surface reflectance x 10000; ``uint8 = round(clip(dn, 0, M) * 255 / M)`` with
``M = reflectance_max`` (default 4000, i.e. reflectance 0.4: the 99th
percentile of vegetation NIR, and well above water, soil and urban visible
reflectance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raydal.data import register_dataset
from raydal.data.base import ArchiveIndex, ArchiveReader, Problem
from raydal.exceptions import ConfigError, DatasetError


@register_dataset
class BigEarthNetReader(ArchiveReader):
    """Reader of BigEarthNet v2 Sentinel-2 patches with the 19-class reBEN labels."""

    name = "bigearthnet"
    classes = (
        "Urban fabric",
        "Industrial or commercial units",
        "Arable land",
        "Permanent crops",
        "Pastures",
        "Complex cultivation patterns",
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
        "Agro-forestry areas",
        "Broad-leaved forest",
        "Coniferous forest",
        "Mixed forest",
        "Natural grassland and sparsely vegetated areas",
        "Moors, heathland and sclerophyllous vegetation",
        "Transitional woodland, shrub",
        "Beaches, dunes, sands",
        "Inland wetlands",
        "Coastal wetlands",
        "Inland waters",
        "Marine waters",
    )
    #: Loaded band order: R, G, B first (for RGB-pretrained stems), then the rest.
    band_names = ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
    #: Ground sampling distance in metres of each band.
    resolution: ClassVar[dict[str, int]] = {
        "B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20,
        "B11": 20, "B12": 20, "B01": 60, "B09": 60,
    }  # fmt: skip
    default_size = 120
    s2_dir: ClassVar[str] = "BigEarthNet-S2"
    metadata_file: ClassVar[str] = "metadata.parquet"
    #: metadata ``split`` value -> ArchiveIndex split.
    split_names: ClassVar[dict[str, str]] = {"train": "train", "validation": "val", "test": "test"}
    layout_hint = "BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif and metadata.parquet"

    def __init__(self, root: str | Path, reflectance_max: int = 4000) -> None:
        if isinstance(reflectance_max, bool) or not isinstance(reflectance_max, int) or not 0 < reflectance_max <= 65535:
            raise ConfigError(
                f"The 'reflectance_max' parameter of BigEarthNetReader must be an int in [1, 65535]. "
                f"Got {reflectance_max!r} instead."
            )
        self.reflectance_max = reflectance_max
        super().__init__(root)

    def settings(self) -> dict[str, Any]:
        return {"reflectance_max": self.reflectance_max}

    def scaling(self) -> dict[str, Any]:
        m = self.reflectance_max
        return {
            "method": "linear_clip",
            "source_dtype": "uint16",
            "source_units": "surface reflectance x 10000",
            "clip": [0, m],
            "formula": f"uint8 = round(clip(dn, 0, {m}) * 255 / {m})",
        }

    def _check_layout(self) -> None:
        for name in (self.s2_dir, self.metadata_file):
            if not (self.root / name).exists():
                raise self._not_found(self.root / name)

    def scan(self) -> tuple[ArchiveIndex, list[Problem]]:
        problems: list[Problem] = []
        s2 = self.root / self.s2_dir
        on_disk = {p.name: p for p in sorted(s2.glob("*/*")) if p.is_dir()}
        metadata = self._load_metadata()
        where_of = f"{self.root / self.metadata_file}:row"

        ids, paths, labels, splits, seen = [], [], [], [], {}
        for row, (patch_id, split, names) in enumerate(metadata):
            where = f"{where_of} {row} ({patch_id})"
            if patch_id in seen:
                problems.append((where, f"duplicate patch_id, first at row {seen[patch_id]}"))
                continue
            seen[patch_id] = row
            folder = s2 / product_of(patch_id) / patch_id
            unknown = [n for n in names if n not in self.classes]
            if folder.name not in on_disk or on_disk[folder.name] != folder:
                problems.append((where, f"label row without image: no folder {folder}"))
            elif split not in self.split_names:
                problems.append((where, f"split {split!r} is not one of {list(self.split_names)}"))
            elif unknown:
                problems.append((where, f"unknown class {unknown}; valid: {list(self.classes)}"))
            elif not names:
                problems.append((where, "image without labels: empty labels list"))
            else:
                target = np.zeros(len(self.classes), dtype=np.uint8)
                target[[self.classes.index(n) for n in names]] = 1
                ids.append(patch_id)
                paths.append(str(folder))
                labels.append(target)
                splits.append(self.split_names[split])
        for patch_id in sorted(on_disk.keys() - seen.keys()):
            problems.append((str(on_disk[patch_id]), f"image without labels: no row in {self.root / self.metadata_file}"))
        index = self._make_index(ids, paths, labels, splits)
        return index, problems

    def load_image(self, path: str | Path) -> np.ndarray:
        """uint8 [H, W, 12] on the 10 m grid (120x120 in the real archive), bands ``band_names``."""
        folder = Path(path)
        patch_id = folder.name
        bands = [folder / f"{patch_id}_{b}.tif" for b in self.band_names]
        missing = [f.name for f in bands if not f.is_file()]
        if missing:
            raise self._bad_file(folder, f"missing band files {missing}")
        first = self._read_tif(bands[0], bands=1, dtype="uint16")
        h, w = first.shape[:2]
        stack = np.empty((h, w, len(bands)), dtype=np.uint16)
        stack[..., 0] = first[..., 0]
        for k, (band, file) in enumerate(zip(self.band_names[1:], bands[1:]), 1):
            factor = self.resolution[band] // 10
            if h % factor or w % factor:
                raise self._bad_file(file, f"the 10 m bands are {h}x{w} px, not a multiple of {factor}")
            native = (h // factor, w // factor)
            stack[..., k] = self._read_tif(file, 1, "uint16", native_shape=native, out_shape=(h, w))[..., 0]
        return self._scale(stack)

    def _scale(self, dn: np.ndarray) -> np.ndarray:
        """uint16 reflectance x 10000 -> uint8, see the module docstring."""
        m = self.reflectance_max
        return np.rint(np.minimum(dn, m).astype(np.float32) * (255.0 / m)).astype(np.uint8)

    def _load_metadata(self) -> list[tuple[str, str, list[str]]]:
        """``(patch_id, split, label names)`` per metadata row."""
        import pyarrow.parquet as pq

        path = self.root / self.metadata_file
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise DatasetError(f"Cannot read {path} ({err}). Fix: re-download metadata.parquet.") from err
        missing = [c for c in ("patch_id", "split", "labels") if c not in table.column_names]
        if missing:
            raise DatasetError(
                f"{path} lacks the columns {missing} (it has {table.column_names}). "
                f"Fix: use the BigEarthNet v2 metadata.parquet."
            )
        return list(
            zip(
                table["patch_id"].to_pylist(),
                table["split"].to_pylist(),
                [list(v or []) for v in table["labels"].to_pylist()],
            )
        )


def product_of(patch_id: str) -> str:
    """The product folder of a patch: ``'_'.join(patch_id.split('_')[:-2])``."""
    return "_".join(patch_id.split("_")[:-2])
