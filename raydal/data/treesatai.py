"""TreeSatAI benchmark archive: 304x304 aerial CIR patches, 15 tree-genus labels.

Layout (docs/data.md, "Supported archives")::

    <root>/aerial/60m/*.tif          (some copies: aerial_60m/<species>/*.tif)
    <root>/s1/60m/*.tif  <root>/s2/60m/*.tif         same names; not read here
    <root>/labels/TreeSatBA_v9_60m_multi_labels.json  {"<file>.tif": [[genus, fraction], ...]}
    <root>/train_filenames.lst  <root>/test_filenames.lst  one file name per line

Settings: ``threshold`` keeps a genus when its area fraction is > threshold
(default 0.07, the benchmark's rule; 0 keeps every genus present, as torchgeo
does). ``band_order`` names the aerial files' band order, which sources
dispute: ``"torchgeo"`` (IR, G, B, R; the default) or ``"nir-rgb"`` (NIR, R, G,
B), or an explicit sequence of the names R, G, B, NIR. Either way loaded images
come out as (R, G, B, NIR), so the first three channels are RGB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raydal.data import register_dataset
from raydal.data.base import ArchiveIndex, ArchiveReader, Problem
from raydal.exceptions import DatasetError
from raydal.settings import Interval, check_settings, param_error, setting

_BOTH = "train+test"


def _band_order_arg(text: str) -> str | list[str]:
    """``--band-order``: a named order (``torchgeo``) or the band names in file order (``NIR,R,G,B``)."""
    return [b.strip() for b in text.split(",")] if "," in text else text


@dataclass
class TreeSatAISettings:
    """The settings of :class:`TreeSatAIReader` (``raydal prepare treesatai`` flags)."""

    threshold: float = setting(
        0.07,
        "TreeSatAI: keep a genus when its area fraction is > this (the benchmark's rule; 0 keeps every "
        "genus present, as torchgeo does)",
        Interval(float, 0, 1, "left"),
    )
    band_order: str | list[str] = setting(
        "torchgeo",
        "TreeSatAI aerial band order: torchgeo (IR,G,B,R), nir-rgb (NIR,R,G,B), or the names R,G,B,NIR in file order",
        parse=_band_order_arg,
    )


@register_dataset
class TreeSatAIReader(ArchiveReader):
    """Reader of the TreeSatAI aerial patches and their multi-label genus targets."""

    name = "treesatai"
    classes = (
        "Abies", "Acer", "Alnus", "Betula", "Cleared", "Fagus", "Fraxinus", "Larix",
        "Picea", "Pinus", "Populus", "Prunus", "Pseudotsuga", "Quercus", "Tilia",
    )  # fmt: skip
    band_names = ("R", "G", "B", "NIR")
    default_size = 288
    band_orders: ClassVar[dict[str, tuple[str, ...]]] = {
        "torchgeo": ("NIR", "G", "B", "R"),  # torchgeo, citing the official PDF: (IR, G, B, R)
        "nir-rgb": ("NIR", "R", "G", "B"),
    }
    aerial_globs: ClassVar[tuple[str, ...]] = ("aerial/60m/*.tif", "aerial_60m/*/*.tif", "aerial_60m/*.tif")
    labels_file: ClassVar[str] = "labels/TreeSatBA_v9_60m_multi_labels.json"
    split_lists: ClassVar[dict[str, str]] = {"train": "train_filenames.lst", "test": "test_filenames.lst"}
    layout_hint = (
        "aerial/60m/*.tif (or aerial_60m/<species>/*.tif), "
        "labels/TreeSatBA_v9_60m_multi_labels.json, train_filenames.lst and test_filenames.lst"
    )

    Settings = TreeSatAISettings

    def __init__(
        self,
        root: str | Path,
        threshold: float = TreeSatAISettings.threshold,
        band_order: str | Sequence[str] = TreeSatAISettings.band_order,
    ) -> None:
        check_settings(TreeSatAISettings(threshold, band_order), "TreeSatAIReader")
        self.threshold = float(threshold)
        self.file_band_order = self._parse_band_order(band_order)
        self._take = [self.file_band_order.index(b) for b in self.band_names]
        super().__init__(root)

    def _parse_band_order(self, band_order: str | Sequence[str]) -> tuple[str, ...]:
        if isinstance(band_order, str):
            if band_order in self.band_orders:
                return self.band_orders[band_order]
            names: tuple[str, ...] = ()
        else:
            names = tuple("NIR" if str(b).upper() == "IR" else str(b).upper() for b in band_order)
        if sorted(names) != sorted(self.band_names):
            raise param_error(
                "band_order",
                "TreeSatAIReader",
                f"one of {list(self.band_orders)} or an order of the names R, G, B, NIR (IR)",
                band_order,
            )
        return names

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "band_order": list(self.file_band_order)}  # the constructor's kwargs

    def _check_layout(self) -> None:
        if not any((self.root / d).is_dir() for d in ("aerial/60m", "aerial_60m")):
            raise self._not_found(self.root / "aerial" / "60m")
        for name in (self.labels_file, *self.split_lists.values()):
            if not (self.root / name).is_file():
                raise self._not_found(self.root / name)

    def scan(self) -> tuple[ArchiveIndex, list[Problem]]:
        problems: list[Problem] = []
        by_name: dict[str, Path] = {}
        for pattern in self.aerial_globs:
            for path in sorted(self.root.glob(pattern)):
                if path.name in by_name:
                    problems.append((str(path), f"duplicate file name, also at {by_name[path.name]}"))
                else:
                    by_name[path.name] = path
        targets = self._load_targets(problems)
        split_of = self._load_split_lists(problems)

        ids, paths, labels, splits = [], [], [], []
        for name, path in sorted(by_name.items()):
            if name not in targets:
                problems.append(
                    (str(path), f"image without labels: no entry {name!r} in {self.root / self.labels_file}")
                )
            elif targets[name] is None:
                continue  # a malformed label entry, reported by _load_targets
            elif not targets[name].any():
                problems.append((str(path), f"image without labels: no genus has a fraction > {self.threshold}"))
            elif name not in split_of:
                problems.append((str(path), "listed in neither train_filenames.lst nor test_filenames.lst"))
            elif split_of[name][0] == _BOTH:
                continue  # reported at its second list line
            else:
                ids.append(Path(name).stem)
                paths.append(str(path))
                labels.append(targets[name])
                splits.append(split_of[name][0])
        labels_path = self.root / self.labels_file
        for name in sorted(targets.keys() - by_name.keys()):
            problems.append((f"{labels_path}:{name}", f"label row without image: no aerial file {name}"))
        for name in sorted(split_of.keys() - by_name.keys()):
            problems.append((split_of[name][1], f"lists {name}, which has no aerial file"))
        index = self._make_index(ids, paths, labels, splits)
        return index, problems

    def load_image(self, path: str | Path) -> np.ndarray:
        """uint8 [H, W, 4] in (R, G, B, NIR) order, whatever the file's band order."""
        return np.ascontiguousarray(self._read_tif(path, bands=4, dtype="uint8")[..., self._take])

    def _load_targets(self, problems: list[Problem]) -> dict[str, np.ndarray | None]:
        """``{file name: uint8 [C]}`` from the labels JSON.

        A malformed entry (unknown genus, bad fraction) maps to None and goes to ``problems``.
        """
        path = self.root / self.labels_file
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DatasetError(f"Cannot read {path} ({err}). Fix: re-download the labels JSON.") from err
        if not isinstance(data, dict):
            raise DatasetError(f"{path} must map file names to [[genus, fraction], ...] lists. Fix: re-download it.")
        targets: dict[str, np.ndarray | None] = {}
        for name, entries in data.items():
            targets[name] = None
            where = f"{path}:{name}"
            target = np.zeros(len(self.classes), dtype=np.uint8)
            try:
                pairs = [(str(genus), float(fraction)) for genus, fraction in entries]
            except (TypeError, ValueError):
                problems.append((where, f"expected [[genus, fraction], ...], got {entries!r}"))
                continue
            unknown = [g for g, _ in pairs if g not in self.classes]
            bad = [f for _, f in pairs if not (math.isfinite(f) and 0 <= f <= 1)]
            if unknown:
                problems.append((where, f"unknown class {unknown}; valid genera: {list(self.classes)}"))
            elif bad:
                problems.append((where, f"fractions outside [0, 1]: {bad}"))
            else:
                for genus, fraction in pairs:
                    if fraction > self.threshold:
                        target[self.classes.index(genus)] = 1
                targets[name] = target
        return targets

    def _load_split_lists(self, problems: list[Problem]) -> dict[str, tuple[str, str]]:
        """``{file name: (split, "list:line")}`` from the two .lst files; split is
        "train", "test", or ``_BOTH`` for a name in both lists (a problem)."""
        split_of: dict[str, tuple[str, str]] = {}
        for split, list_name in self.split_lists.items():
            path = self.root / list_name
            for no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                name = line.strip()
                if not name:
                    continue
                if name in split_of:
                    problems.append((f"{path}:{no}", f"{name} is also listed at {split_of[name][1]}"))
                    split_of[name] = (_BOTH, split_of[name][1])
                else:
                    split_of[name] = (split, f"{path}:{no}")
        return split_of
