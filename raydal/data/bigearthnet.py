"""BigEarthNet Sentinel-2 patches of 1.2 km: v2 (reBEN, 19 labels) and v1 (43 CORINE labels, or 19).

Layouts (docs/data.md, "Supported archives")::

    v2  <root>/BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif
        <root>/metadata.parquet      patch_id, s1_name, split (train/validation/test), labels
    v1  <root>/BigEarthNet-v1.0/<patch>/<patch>_<band>.tif
        <root>/BigEarthNet-v1.0/<patch>/<patch>_labels_metadata.json   labels (43-class names), ...
        <root>/train.csv, val.csv, test.csv                  optional: the published split
        <root>/patches_with_seasonal_snow.csv, patches_with_cloud_and_shadow.csv   optional

with v2's ``product = '_'.join(patch_id.split('_')[:-2])``. The v1 patch folders
may also sit in ``root`` itself (a renamed ``BigEarthNet-v1.0``). Each band is a
uint16 single-band GeoTIFF at its native resolution: 10 m bands 120x120 px, 20 m
bands 60x60, 60 m bands 20x20; all are resampled (bilinear) to the 10 m grid.

v1 labels: ``nomenclature=19`` (default, as the v2 archive and the 19-class paper
use) maps each patch's 43-class names through the published 43 -> 19 mapping
(``NOMENCLATURE_19``); ``nomenclature=43`` keeps them. Left out of a v1 scan, and
counted in ``left_out`` and one log line, as the 19-class convention does: the
patches in the published snow and cloud/shadow lists (``drop_snow_cloud``), and
with 19 classes the patches none of whose labels has a 19-class counterpart.

Scaling to uint8 (recorded in every shard manifest): digital numbers are
surface reflectance x 10000; ``uint8 = round(clip(dn, 0, M) * 255 / M)`` with
``M = reflectance_max`` (default 4000, i.e. reflectance 0.4: the 99th
percentile of vegetation NIR, and well above water, soil and urban visible
reflectance).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raydal.data import register_dataset
from raydal.data.base import ArchiveIndex, ArchiveReader, Problem
from raydal.exceptions import DatasetError, DatasetNotFoundError
from raydal.settings import Interval, check_settings, param_error, setting

log = logging.getLogger(__name__)

#: The 43 CORINE Land Cover Level-3 classes of BigEarthNet v1, in the published index order.
#: Source: ``original_labels`` of label_indices.json in the BigEarthNet-S2 19-class models
#: repository (https://git.tu-berlin.de/rsim/BigEarthNet-S2_19-classes_models/-/blob/master/label_indices.json),
#: the same list as torchgeo's ``BigEarthNet.class_sets[43]``
#: (https://github.com/microsoft/torchgeo/blob/main/torchgeo/datasets/bigearthnet.py).
CLASSES_43 = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

#: The 19-class nomenclature (Sumbul et al., "BigEarthNet-MM", IEEE GRSM 2021) as the
#: 43-class names each class merges, in 19-class index order. Source: ``label_conversion``
#: of the same label_indices.json ([[0, 1], [2], [11, 12, 13], [14, 15, 16, 18], [17], [19],
#: [20], [21], [22], [23], [24], [25, 31], [26, 27], [28], [29], [33, 34], [35, 36],
#: [38, 39], [40, 41, 42]]), equal to torchgeo's ``BigEarthNet.label_converter``. The 11
#: classes named nowhere here (road and rail, port areas, airports, mineral extraction,
#: dump and construction sites, green urban areas, sport and leisure, bare rock, burnt
#: areas, intertidal flats) have no 19-class counterpart.
NOMENCLATURE_19: dict[str, tuple[str, ...]] = {
    "Urban fabric": ("Continuous urban fabric", "Discontinuous urban fabric"),
    "Industrial or commercial units": ("Industrial or commercial units",),
    "Arable land": ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields"),
    "Permanent crops": (
        "Vineyards",
        "Fruit trees and berry plantations",
        "Olive groves",
        "Annual crops associated with permanent crops",
    ),  # fmt: skip
    "Pastures": ("Pastures",),
    "Complex cultivation patterns": ("Complex cultivation patterns",),
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
    ),
    "Agro-forestry areas": ("Agro-forestry areas",),
    "Broad-leaved forest": ("Broad-leaved forest",),
    "Coniferous forest": ("Coniferous forest",),
    "Mixed forest": ("Mixed forest",),
    "Natural grassland and sparsely vegetated areas": ("Natural grassland", "Sparsely vegetated areas"),
    "Moors, heathland and sclerophyllous vegetation": ("Moors and heathland", "Sclerophyllous vegetation"),
    "Transitional woodland, shrub": ("Transitional woodland/shrub",),
    "Beaches, dunes, sands": ("Beaches, dunes, sands",),
    "Inland wetlands": ("Inland marshes", "Peatbogs"),
    "Coastal wetlands": ("Salt marshes", "Salines"),
    "Inland waters": ("Water courses", "Water bodies"),
    "Marine waters": ("Coastal lagoons", "Estuaries", "Sea and ocean"),
}

VERSIONS = ("auto", "v1", "v2")
NOMENCLATURES = (19, 43)


@dataclass
class BigEarthNetSettings:
    """The settings of :class:`BigEarthNetReader` (``raydal prepare bigearthnet`` flags)."""

    reflectance_max: int = setting(
        4000,
        "BigEarthNet: digital number mapped to 255 (uint8 = clip(dn, 0, this) * 255 / this)",
        Interval(int, 1, 65535),
    )
    version: str = setting(
        "auto",
        "BigEarthNet layout: v2 (reBEN), v1, or auto (v2 when BigEarthNet-S2 and metadata.parquet are there, else v1)",
        choices=VERSIONS,
        flag="--bigearthnet-version",
    )
    nomenclature: int = setting(
        19,
        "BigEarthNet v1: 19 classes by the published mapping or the 43 CORINE classes (v2 publishes 19 only)",
        choices=NOMENCLATURES,
    )
    drop_snow_cloud: bool = setting(
        True,
        "BigEarthNet v1: leave out the patches of the published snow and cloud/shadow lists "
        "(--keep-snow-cloud: keep them)",
        flag="--drop-snow-cloud",
        off_flag="--keep-snow-cloud",
    )


@register_dataset
class BigEarthNetReader(ArchiveReader):
    """Reader of BigEarthNet Sentinel-2 patches: v2 (reBEN) or v1, found by ``version="auto"``."""

    name = "bigearthnet"
    #: The 19 classes of v2 and of v1 read with ``nomenclature=19`` (a v1 reader with
    #: ``nomenclature=43`` has ``CLASSES_43`` instead).
    classes = tuple(NOMENCLATURE_19)
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
    v1_dir: ClassVar[str] = "BigEarthNet-v1.0"
    v1_labels_suffix: ClassVar[str] = "_labels_metadata.json"
    #: v1 split -> the published list's file names, first found wins (the models repositories
    #: publish train.csv / val.csv / test.csv; torchgeo saves them as bigearthnet-<split>.csv).
    v1_split_lists: ClassVar[dict[str, tuple[str, ...]]] = {
        split: (f"{split}.csv", f"bigearthnet-{split}.csv") for split in ("train", "val", "test")
    }
    #: The published lists of patches covered by seasonal snow, and by clouds or their shadows.
    v1_drop_lists: ClassVar[tuple[str, ...]] = ("patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv")
    layout_v2: ClassVar[str] = (
        "BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif and metadata.parquet (v2, reBEN)"
    )
    layout_v1: ClassVar[str] = (
        "BigEarthNet-v1.0/<patch>/<patch>_<band>.tif and <patch>_labels_metadata.json, "
        "optionally train.csv, val.csv, test.csv (v1)"
    )
    layout_hint = f"{layout_v2}, or {layout_v1}"

    Settings = BigEarthNetSettings

    def __init__(
        self,
        root: str | Path,
        reflectance_max: int = BigEarthNetSettings.reflectance_max,
        version: str = BigEarthNetSettings.version,
        nomenclature: int = BigEarthNetSettings.nomenclature,
        drop_snow_cloud: bool = BigEarthNetSettings.drop_snow_cloud,
    ) -> None:
        """root: the archive folder; the settings: :class:`BigEarthNetSettings` (v2's
        metadata.parquet has left the snow and cloud/shadow patches out already)."""
        check_settings(
            BigEarthNetSettings(reflectance_max, version, nomenclature, drop_snow_cloud), "BigEarthNetReader"
        )
        self.reflectance_max = reflectance_max
        self.version = version
        self.nomenclature = int(nomenclature)
        self.drop_snow_cloud = drop_snow_cloud
        #: After ``scan``: reason -> ids of the patches left out by the published conventions
        #: (not bad input, so not problems). Empty for v2.
        self.left_out: dict[str, list[str]] = {}
        self.layout = ""  # "v1" or "v2", set by _check_layout
        self.patches_dir: Path | None = None  # v1: the folder of patch folders
        super().__init__(root)

    def settings(self) -> dict[str, Any]:
        if self.layout == "v2":  # as before v1 support: "auto" finds v2 first
            return {"reflectance_max": self.reflectance_max}
        return {
            "reflectance_max": self.reflectance_max,
            "version": "v1",
            "nomenclature": self.nomenclature,
            "drop_snow_cloud": self.drop_snow_cloud,
        }

    def scaling(self) -> dict[str, Any]:
        m = self.reflectance_max
        return {
            "method": "linear_clip",
            "source_dtype": "uint16",
            "source_units": "surface reflectance x 10000",
            "clip": [0, m],
            "formula": f"uint8 = round(clip(dn, 0, {m}) * 255 / {m})",
        }

    # -- which layout ---------------------------------------------------------------

    def _check_layout(self) -> None:
        """Find the layout (``self.layout``, ``self.classes``), or say what was looked for."""
        v2_missing = [self.root / n for n in (self.s2_dir, self.metadata_file) if not (self.root / n).exists()]
        if self.version == "v2" or (self.version == "auto" and not v2_missing):
            if v2_missing:
                raise self._not_found(v2_missing[0])
            if self.nomenclature != 19:
                raise param_error(
                    "nomenclature",
                    "BigEarthNetReader",
                    f"19 for a v2 (reBEN) archive, which publishes 19 classes only ({self.root} holds v2)",
                    self.nomenclature,
                )
            self.layout = "v2"
            return
        self.patches_dir = self._v1_patches()
        if self.patches_dir is None:
            v1_looked = (
                f"{self.root / self.v1_dir}/<patch>/ (band files and <patch>{self.v1_labels_suffix}), "
                f"or such patch folders in {self.root} itself"
            )
            if self.version == "v1":
                raise DatasetNotFoundError(
                    f"No BigEarthNet v1 archive found: looked for {v1_looked}. Fix: point --data-root "
                    f"(the `root` argument) at the folder that holds {self.v1_dir}, or write a fake one "
                    f"with `raydal synth bigearthnet {self.root} --bigearthnet-version v1`."
                )
            raise DatasetNotFoundError(
                f"No bigearthnet archive found in {self.root}: looked for the v2 (reBEN) layout, "
                f"{self.root / self.s2_dir}/<product>/<patch_id>/ and {self.root / self.metadata_file} "
                f"(missing: {', '.join(p.name for p in v2_missing)}), and for the v1 layout, {v1_looked}. "
                f"Fix: point --data-root (the `root` argument) at the folder that holds {self.s2_dir} and "
                f"{self.metadata_file} (v2) or {self.v1_dir} (v1), or write a fake one with "
                f"`raydal synth bigearthnet {self.root}`."
            )
        self.layout = "v1"
        if self.nomenclature == 43:
            self.classes = CLASSES_43

    def _v1_patches(self) -> Path | None:
        """The folder of v1 patch folders: ``root/BigEarthNet-v1.0``, or ``root`` when its
        first folders are patch folders; None when neither."""
        if (self.root / self.v1_dir).is_dir():
            return self.root / self.v1_dir
        with os.scandir(self.root) as entries:
            folders = islice((e for e in entries if e.is_dir() and not e.name.startswith(".")), 20)
            if any(Path(e.path, e.name + self.v1_labels_suffix).is_file() for e in folders):
                return self.root
        return None

    # -- indexing ---------------------------------------------------------------------

    def scan(self) -> tuple[ArchiveIndex, list[Problem]]:
        return self._scan_v1() if self.layout == "v1" else self._scan_v2()

    def _scan_v2(self) -> tuple[ArchiveIndex, list[Problem]]:
        problems: list[Problem] = []
        self.left_out = {}
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
            problems.append(
                (str(on_disk[patch_id]), f"image without labels: no row in {self.root / self.metadata_file}")
            )
        index = self._make_index(ids, paths, labels, splits)
        return index, problems

    def _scan_v1(self) -> tuple[ArchiveIndex, list[Problem]]:
        """Index the v1 patch folders: labels from each patch's JSON, the split from the lists."""
        problems: list[Problem] = []
        with os.scandir(self.patches_dir) as entries:
            on_disk = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        dropped = self._load_drop_lists() if self.drop_snow_cloud else {}
        split_of, twice = self._load_split_lists(set(on_disk), problems)
        no_19 = "no label in the 19-class nomenclature"
        self.left_out = {reason: [] for reason in (*self.v1_drop_lists, no_19)}

        ids, paths, labels, splits = [], [], [], []
        for name in on_disk:
            folder = self.patches_dir / name
            if name in dropped:
                self.left_out[dropped[name]].append(name)
                continue
            target = self._load_target(folder, problems)
            if target is None or name in twice:
                continue  # reported as problems
            if not target.any():
                self.left_out[no_19].append(name)
                continue
            ids.append(name)
            paths.append(str(folder))
            labels.append(target)
            # with published lists a patch in none of them is train (the pool); without, no split
            splits.append(split_of.get(name, "train" if split_of else ""))
        self.left_out = {reason: names for reason, names in self.left_out.items() if names}
        if self.left_out:
            log.warning(
                "BigEarthNet v1 at %s: left out %s (the published convention; %d patches kept).",
                self.root,
                ", ".join(f"{len(v)} patches {_why(k)}" for k, v in self.left_out.items()),
                len(ids),
            )
        return self._make_index(ids, paths, labels, splits), problems

    def _load_target(self, folder: Path, problems: list[Problem]) -> np.ndarray | None:
        """uint8 [C] from ``<patch>_labels_metadata.json`` (all zero when no label maps to the
        19 classes); None, with a problem recorded, when the file is missing or bad."""
        path = folder / f"{folder.name}{self.v1_labels_suffix}"
        try:
            metadata = json.loads(path.read_bytes())
        except FileNotFoundError:
            problems.append((str(folder), f"image without labels: no {path.name}"))
            return None
        except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            problems.append((str(path), f"is not valid JSON ({err})"))
            return None
        names = metadata.get("labels") if isinstance(metadata, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append((str(path), f"has no 'labels' list of class names (got {names!r})"))
            return None
        unknown = [n for n in names if n not in CLASSES_43]
        if unknown:
            problems.append(
                (
                    str(path),
                    f"unknown class {unknown}: not one of the 43 BigEarthNet v1 classes "
                    f"(raydal.data.bigearthnet.CLASSES_43)",
                )
            )
            return None
        if not names:
            problems.append((str(path), "image without labels: empty 'labels' list"))
            return None
        if self.nomenclature == 19:
            names = [new for new, olds in NOMENCLATURE_19.items() if set(olds) & set(names)]
        target = np.zeros(len(self.classes), dtype=np.uint8)
        target[[self.classes.index(n) for n in names]] = 1
        return target

    def _load_drop_lists(self) -> dict[str, str]:
        """patch name -> the snow or cloud list that names it (the first, when both do)."""
        dropped: dict[str, str] = {}
        for file in reversed(self.v1_drop_lists):
            if (self.root / file).is_file():
                dropped |= {name: file for _, name in self._read_list(self.root / file)}
        return dropped

    def _load_split_lists(self, on_disk: set[str], problems: list[Problem]) -> tuple[dict[str, str], set[str]]:
        """``({patch: "train"/"val"/"test"}, {patches listed twice})`` from the published lists
        found in ``root`` (({}, set()) when there are none). A listed patch without folder, and
        a second listing, are problems."""
        split_of: dict[str, str] = {}
        first: dict[str, str] = {}
        twice: set[str] = set()
        for split, names in self.v1_split_lists.items():
            path = next((self.root / n for n in names if (self.root / n).is_file()), None)
            if path is None:
                continue
            for line, name in self._read_list(path):
                where = f"{path}:line {line}"
                if name in first:
                    problems.append((where, f"patch {name} is listed twice (also at {first[name]})"))
                    twice.add(name)
                elif name not in on_disk:
                    problems.append((where, f"listed patch without image: no folder {self.patches_dir / name}"))
                else:
                    first[name] = where
                    split_of[name] = split
        return split_of, twice

    @staticmethod
    def _read_list(path: Path) -> list[tuple[int, str]]:
        """``(line number, patch name)`` of a one-patch-a-line CSV; the first column counts (the
        multi-modal lists add the Sentinel-1 name after a comma)."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"Cannot read {path} ({err}). Fix: re-download it or remove it.") from err
        rows = ((k, line.split(",", 1)[0].strip()) for k, line in enumerate(text.splitlines(), 1))
        return [(k, name) for k, name in rows if name]

    # -- pixels -----------------------------------------------------------------------

    def load_image(self, path: str | Path) -> np.ndarray:
        """uint8 [H, W, 12] on the 10 m grid (120x120 in the real archive), bands ``band_names``.

        v1 and v2 patch folders name their band files alike: ``<patch>/<patch>_<band>.tif``.
        """
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
    """The product folder of a v2 patch: ``'_'.join(patch_id.split('_')[:-2])``."""
    return "_".join(patch_id.split("_")[:-2])


def _why(reason: str) -> str:
    """A ``left_out`` key as the log says it."""
    return f"listed in {reason}" if reason.endswith(".csv") else f"with {reason}"
