"""UC Merced Land Use, multi-label version: 2100 RGB aerial images, 17 labels.

Layout (docs/data.md, "Supported archives")::

    <root>/UCMerced_LandUse/Images/<scene>/<scene>NN.tif   8-bit RGB, ~256x256
    <root>/LandUse_Multilabeled.txt                        (or multilabels/…)

The label file is tab-separated: a header whose first cell is ``IMAGE\\LABEL``
followed by the 17 class names, then one row per image: its name without
extension and 17 values 0/1. Rows are matched to images by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from raydal.data import register_dataset
from raydal.data.base import ArchiveIndex, ArchiveReader, Problem
from raydal.exceptions import DatasetError


@register_dataset
class UCMercedReader(ArchiveReader):
    """Reader of the multi-label UC Merced archive (no published split)."""

    name = "ucmerced"
    classes = (
        "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field",
        "grass", "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water",
    )  # fmt: skip
    band_names = ("R", "G", "B")
    default_size = 256
    scenes: ClassVar[tuple[str, ...]] = (
        "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
        "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
        "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
        "sparseresidential", "storagetanks", "tenniscourt",
    )  # fmt: skip
    images_dir: ClassVar[str] = "UCMerced_LandUse/Images"
    label_file: ClassVar[str] = "LandUse_Multilabeled.txt"
    #: Where the label file is looked for, relative to the root, in this order.
    label_file_places: ClassVar[tuple[str, ...]] = (
        "LandUse_Multilabeled.txt",
        "multilabels/LandUse_Multilabeled.txt",
        "UCMerced_LandUse/LandUse_Multilabeled.txt",
    )
    header_first_cell: ClassVar[str] = "IMAGE\\LABEL"
    layout_hint = "UCMerced_LandUse/Images/<scene>/<scene>NN.tif and LandUse_Multilabeled.txt"

    def _check_layout(self) -> None:
        if not (self.root / self.images_dir).is_dir():
            raise self._not_found(self.root / self.images_dir)
        self.labels_path = self._find_label_file()

    def _find_label_file(self) -> Path:
        for place in self.label_file_places:
            if (self.root / place).is_file():
                return self.root / place
        raise self._not_found(self.root / self.label_file)

    def scan(self) -> tuple[ArchiveIndex, list[Problem]]:
        rows, problems = self._load_targets()
        images = sorted((self.root / self.images_dir).glob("*/*.tif"))
        by_name: dict[str, Path] = {}
        for path in images:
            if path.stem in by_name:
                problems.append((str(path), f"duplicate image name, also at {by_name[path.stem]}"))
            else:
                by_name[path.stem] = path

        ids, paths, labels = [], [], []
        for name, path in by_name.items():
            if name not in rows:
                problems.append((str(path), f"image without labels: no row {name!r} in {self.labels_path}"))
                continue
            ids.append(name)
            paths.append(str(path))
            labels.append(rows[name][1])
        for name, (where, _) in rows.items():
            if name not in by_name:
                problems.append((where, f"label row without image: no {name}.tif under {self.root / self.images_dir}"))
        index = self._make_index(ids, paths, labels)
        return index, problems

    def load_image(self, path: str | Path) -> np.ndarray:
        return self._read_tif(path, bands=len(self.band_names), dtype="uint8")

    def _load_targets(self) -> tuple[dict[str, tuple[str, np.ndarray]], list[Problem]]:
        """Parse the label file into ``{name: (file:line, uint8 [C])}`` and the bad rows.

        Lenient about whitespace: cells are split on tabs, or on any whitespace when
        a line holds no tab; CRLF and a UTF-8 BOM are accepted.
        """
        text = self.labels_path.read_text(encoding="utf-8-sig", errors="replace")
        lines = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
        lines = [(no, line) for no, line in lines if line]
        if not lines:
            raise DatasetError(f"{self.labels_path} is empty. Fix: re-download the label file.")
        header_no, header = lines[0]
        columns = self._column_order(_cells(header), f"{self.labels_path}:{header_no}")

        rows: dict[str, tuple[str, np.ndarray]] = {}
        problems: list[Problem] = []
        for no, line in lines[1:]:
            where = f"{self.labels_path}:{no}"
            cells = _cells(line)
            name, values = cells[0], cells[1:]
            if len(values) != len(self.classes):
                problems.append((where, f"row {name!r} has {len(values)} values, expected {len(self.classes)}"))
                continue
            if any(v not in ("0", "1") for v in values):
                problems.append((where, f"row {name!r} has values other than 0/1: {values}"))
                continue
            target = np.zeros(len(self.classes), dtype=np.uint8)
            target[columns] = np.array(values, dtype=np.uint8)
            if name in rows:
                problems.append((where, f"duplicate row {name!r}, first at {rows[name][0]}"))
            elif not target.any():
                problems.append((where, f"image without labels: row {name!r} has every class 0"))
            else:
                rows[name] = (where, target)
        return rows, problems

    def _column_order(self, header: list[str], where: str) -> np.ndarray:
        """Map the header's class columns to positions in ``classes`` (int [C])."""
        names = header[1:]
        unknown = [n for n in names if n not in self.classes]
        missing = [c for c in self.classes if c not in names]
        if header[0] != self.header_first_cell or unknown or missing or len(names) != len(self.classes):
            raise DatasetError(
                f"The header of {self.labels_path} is not the UC Merced multi-label header. "
                f"Fix: re-download LandUse_Multilabeled.txt.",
                [
                    (
                        where,
                        f"expected {self.header_first_cell!r} then {list(self.classes)}; "
                        f"unknown columns {unknown}, missing columns {missing}",
                    )
                ],
            )
        return np.array([self.classes.index(n) for n in names])


def _cells(line: str) -> list[str]:
    """Split a label-file line on tabs, or on any whitespace when it holds no tab."""
    if "\t" in line:
        return [c.strip() for c in line.split("\t")]
    return re.split(r"\s+", line.strip())
