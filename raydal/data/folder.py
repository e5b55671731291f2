"""Your own archive: a folder tree of GeoTIFFs or PNG/JPEG images, labels optional.

Layout::

    <root>/**/<name>.tif|.tiff|.png|.jpg|.jpeg   any depth; any band count and dtype,
                                                 the same for every image of the archive
    labels.csv   (optional, anywhere: ``labels=``) columns ``id`` or ``path``, ``labels``
                 (class names joined by ``;``), optional ``split`` (train/val/test)
    classes.txt  (optional: ``classes=``) one class name per line

An image's id is its file name without extension (``id_from="stem"``) or its
path relative to the root without extension (``id_from="path"``). A label row
names its image by id or by relative path. An image with no label row, or
with an empty ``labels`` cell, is **unlabeled**: it goes to the pool, where
annotators label it (human in the loop). Class names come from ``classes``, or
else from the labels (sorted).

Pixels become uint8 by one rule for the whole archive, recorded in the shard
manifest (see ``scaling()``): ``"none"`` (uint8 sources as they are),
``"range"`` (``uint8 = round(clip((x - lo_b) / (hi_b - lo_b), 0, 1) * 255)``
with a fixed ``value_range``) or ``"percentile"`` (the same formula with lo_b /
hi_b the ``percentiles`` of band b over the archive). Default: ``"none"`` for
uint8 archives, ``"percentile"`` (2, 98) otherwise. NaN/inf pixels are refused
unless ``nan_fill`` gives the value that replaces them.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raydal.data import register_dataset
from raydal.data.base import ArchiveIndex, ArchiveReader, Problem, _error_text, _ignore_not_georeferenced
from raydal.exceptions import ConfigError, DatasetError, DatasetNotFoundError
from raydal.settings import Interval, check_settings, param_error, setting

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
SCALINGS = ("none", "range", "percentile")
ID_FROM = ("stem", "path")
#: ``split`` column values -> ArchiveIndex splits.
SPLIT_VALUES = {"": "", "train": "train", "pool": "train", "val": "val", "validation": "val", "test": "test"}
#: PIL modes converted before reading: palette and alpha are display details, not bands.
_PIL_CONVERT = {"P": "RGB", "PA": "RGB", "RGBA": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LA": "L", "1": "L"}


def _names(text: str) -> list[str]:
    """``"R,G,B"`` -> ["R", "G", "B"] (a flag's comma-separated names)."""
    return [v.strip() for v in text.split(",")]


def _numbers(text: str) -> list[float] | str:
    """``"0,10000"`` -> [0.0, 10000.0] (a flag's comma-separated numbers); text that is none
    stays text, for the reader's check to refuse naming the parameter."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        return text


_SHARE = Interval(float, 0, 1, "left")


@dataclass
class FolderSettings:
    """The settings of :class:`FolderReader` (``raydal prepare folder`` flags; docs/data.md)."""

    labels: str | Path | None = setting(
        None,
        "labels CSV: id (or path), labels (class names joined by ';'), optional split; "
        "images without a row or with empty labels are unlabeled pool images",
        parse=Path,
    )
    classes: str | Path | Sequence[str] | None = setting(
        None, "classes file, one name a line (default: from the labels)", parse=Path
    )
    scaling: str | None = setting(
        None,
        "to uint8: none (uint8 sources), range (--value-range) or percentile (per band over the "
        "archive); default none for uint8 archives, percentile otherwise",
        choices=SCALINGS,
    )
    value_range: Sequence[float] | Sequence[Sequence[float]] | None = setting(
        None, "the fixed range of --scaling range: [lo, hi], or one per band", parse=_numbers, metavar="LO,HI"
    )
    percentiles: Sequence[float] = setting(
        (2.0, 98.0), "the (low, high) percentiles of --scaling percentile", parse=_numbers, metavar="LO,HI"
    )
    nan_fill: float | None = setting(
        None, "replace NaN/inf pixels by this (default: refuse them)", Interval(float, -np.inf, np.inf, "neither")
    )
    id_from: str = setting(
        "stem", "image id: the file name without extension (stem) or the relative path", choices=ID_FROM
    )
    band_names: Sequence[str] | None = setting(
        None, "band names (default: from the files)", parse=_names, metavar="R,G,B,NIR"
    )
    val_share: float = setting(0.25, "share of labeled images held out as val (without a split column)", _SHARE)
    test_share: float = setting(0.25, "share of labeled images held out as test (without a split column)", _SHARE)
    stats_images: int = setting(500, "percentiles from at most this many images", Interval(int, 1))
    rgb_bands: Sequence[str] | None = setting(
        None,
        "the bands thumbnails show as red, green, blue: 3 names or 1-based numbers, e.g. 1,2,3 "
        "(default: by band name; files that name no bands: 1,2,3 up to 4 bands, else 4,3,2)",
        parse=_names,
        metavar="R,G,B",
    )


@register_dataset
class FolderReader(ArchiveReader):
    """Reader of a user's folder of images with an optional, partial labels CSV.

    Args:
        root: the folder searched (recursively) for images; hidden folders are skipped.
        labels: the labels CSV (absolute, or relative to the working directory or to root).
        classes: a classes file (one name per line, ``#`` comments) or a list of names.
        scaling: ``"none"``, ``"range"`` or ``"percentile"``; None: ``"none"`` for uint8
            archives, ``"percentile"`` otherwise.
        value_range: ``[lo, hi]`` for every band, or ``[[lo, hi], ...]`` per band (``"range"``);
            with ``"percentile"``, the per-band values already computed (as ``settings()``
            records them after ``fit_conversion``, so a manifest rebuilds this reader).
        percentiles: the ``(low, high)`` percentiles of ``"percentile"``, in [0, 100].
        nan_fill: the value that replaces NaN/inf pixels; None: such images are bad input.
        id_from: ``"stem"`` (file name without extension) or ``"path"`` (relative path without it).
        band_names: names of the B bands (default: the GeoTIFF band descriptions, R, G, B for
            3 bands, else B1..Bn).
        rgb_bands: the bands thumbnails show as R, G, B (3 names or 1-based numbers); recorded
            in the manifest (default: ``raydal.al.thumbnails.choose_rgb_bands``'s choice).
        val_share, test_share: the shares of the *labeled* images held out as val and test
            when the labels CSV has no ``split`` column (seeded by ``prepare``'s seed).
        stats_images: at most this many images (evenly spaced) give the percentiles.
    """

    name = "folder"
    classes: tuple[str, ...] = ()
    band_names: tuple[str, ...] = ()
    layout_hint = "image files (.tif, .tiff, .png, .jpg, .jpeg) at any depth"

    Settings = FolderSettings

    def __init__(
        self,
        root: str | Path,
        labels: str | Path | None = FolderSettings.labels,
        classes: str | Path | Sequence[str] | None = FolderSettings.classes,
        scaling: str | None = FolderSettings.scaling,
        value_range: Sequence[float] | Sequence[Sequence[float]] | None = FolderSettings.value_range,
        percentiles: Sequence[float] = FolderSettings.percentiles,
        nan_fill: float | None = FolderSettings.nan_fill,
        id_from: str = FolderSettings.id_from,
        band_names: Sequence[str] | None = FolderSettings.band_names,
        val_share: float = FolderSettings.val_share,
        test_share: float = FolderSettings.test_share,
        stats_images: int = FolderSettings.stats_images,
        rgb_bands: Sequence[str] | None = FolderSettings.rgb_bands,
    ) -> None:
        cls = "FolderReader"
        check_settings(
            FolderSettings(
                labels=labels,
                classes=classes,
                scaling=scaling,
                value_range=value_range,
                percentiles=percentiles,
                nan_fill=nan_fill,
                id_from=id_from,
                band_names=band_names,
                val_share=val_share,
                test_share=test_share,
                stats_images=stats_images,
                rgb_bands=rgb_bands,
            ),
            cls,
        )
        try:
            pct = [float(p) for p in percentiles]
        except (TypeError, ValueError):
            pct = []
        if len(pct) != 2 or not 0 <= pct[0] < pct[1] <= 100:
            raise param_error("percentiles", cls, "(low, high) with 0 <= low < high <= 100", percentiles)
        if val_share + test_share >= 1:
            raise ConfigError(
                f"val_share + test_share of {cls} must be < 1 (some labeled images stay in the pool). "
                f"Got {val_share} + {test_share} instead."
            )
        if scaling == "range" and value_range is None:
            raise ConfigError(
                f"scaling='range' needs the 'value_range' parameter of {cls} ([lo, hi], e.g. --value-range 0,10000)."
            )
        self.scaling_method = scaling
        self.value_range = _parse_range(value_range) if value_range is not None else None
        self.percentiles = tuple(pct)
        self.nan_fill = None if nan_fill is None else float(nan_fill)
        self.id_from = id_from
        self.given_band_names = list(band_names) if band_names else None
        self.val_share, self.test_share = float(val_share), float(test_share)
        self.stats_images = stats_images
        self.rgb_bands = [str(b) for b in rgb_bands] if rgb_bands else None
        self._labels_arg = labels
        self._classes_arg = classes if classes is None or isinstance(classes, (str, Path)) else (list(classes) or None)
        self._lo: np.ndarray | None = None  # float64 [B], once the conversion is known
        self._hi: np.ndarray | None = None
        self._images_used = 0
        self._header: tuple[int, str] | None = None  # (bands, dtype) of the archive
        self._sizes: Counter = Counter()
        self._descriptions: list[str] | None = None
        self._headers: dict[Path, tuple[int, str, int, int, list[str]] | Problem] = {}
        super().__init__(root)

    # -- layout ------------------------------------------------------------------
    def _check_layout(self) -> None:
        self.labels_path = self._resolve(self._labels_arg, "labels") if self._labels_arg else None
        if isinstance(self._classes_arg, (str, Path)):
            self.classes_path: Path | None = self._resolve(self._classes_arg, "classes")
        else:
            self.classes_path = None
        if self._classes_arg is not None:  # known now; from the labels only once scanned
            self.classes = tuple(self._class_names({}))
        self.files = self._find_images()
        if not self.files:
            raise DatasetNotFoundError(
                f"The folder archive at {self.root} is empty: no image files "
                f"({', '.join(TIFF_SUFFIXES + PIL_SUFFIXES)}) at any depth (hidden folders are skipped). "
                "Fix: point ROOT at the folder that holds your images, or write an example with "
                f"`raydal synth folder {self.root}`."
            )

    def _resolve(self, value: str | Path, what: str) -> Path:
        path = Path(value).expanduser()
        for candidate in (path, self.root / path):
            if candidate.is_file():
                return candidate.resolve()
        raise DatasetNotFoundError(
            f"The {what} file {value} does not exist (looked at {path.resolve()} and {self.root / path}). "
            f"Fix: pass the path of your {what} file (--{what})."
        )

    def _find_images(self) -> list[Path]:
        suffixes = TIFF_SUFFIXES + PIL_SUFFIXES
        return sorted(
            p
            for p in self.root.rglob("*")
            if p.suffix.lower() in suffixes
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )

    def image_id(self, path: Path) -> str:
        """The id of an image file of this archive (see ``id_from``)."""
        if self.id_from == "stem":
            return path.stem
        return path.relative_to(self.root).with_suffix("").as_posix()

    @property
    def default_size(self) -> int:  # type: ignore[override]
        """The most common image side of the archive (its larger side), read from headers."""
        if not self._sizes:
            self._read_headers([])
        return max(self._sizes.most_common(1)[0][0]) if self._sizes else 64

    # -- indexing ----------------------------------------------------------------
    def scan(self) -> tuple[ArchiveIndex, list[Problem]]:
        problems: list[Problem] = []
        by_id: dict[str, Path] = {}
        for path in self.files:
            sid = self.image_id(path)
            if sid in by_id:
                problems.append(
                    (
                        str(path),
                        f"duplicate image id {sid!r}, also {by_id[sid]}. Fix: rename one "
                        "of them, or use relative paths as ids (--id-from path)",
                    )
                )
            else:
                by_id[sid] = path
        problems += self._read_headers(list(by_id.values()))
        rows = self._read_labels(by_id, problems) if self.labels_path else {}
        bad = {p for p, _ in problems}  # unreadable files (listed): their label rows are not orphans
        by_id = {sid: p for sid, p in by_id.items() if str(p) not in bad}
        self.classes = tuple(self._class_names(rows))
        index = {c: k for k, c in enumerate(self.classes)}
        ids, paths, labels, labeled, splits = [], [], [], [], []
        for sid, path in by_id.items():
            where, names, split = rows.get(sid, ("", [], ""))
            if names == ["\0bad"]:  # its label row is bad (listed): an unlabeled image would hide that
                continue
            unknown = [n for n in names if n not in index]
            if unknown:
                problems.append(
                    (
                        where,
                        f"unknown class {unknown}; valid: {list(self.classes)}. Fix: correct the "
                        "name, or add it to the classes file",
                    )
                )
                continue
            if split in ("val", "test") and not names:
                problems.append((where, f"split {split!r} but no labels: a {split} image needs labels"))
                continue
            target = np.zeros(len(self.classes), dtype=np.uint8)
            target[[index[n] for n in names]] = 1
            ids.append(sid)
            paths.append(str(path))
            labels.append(target)
            labeled.append(bool(names))
            splits.append(split)
        out = self._make_index(ids, paths, labels, splits)
        out.labeled = np.array(labeled, dtype=bool)
        return out, problems

    def _read_headers(self, files: list[Path]) -> list[Problem]:
        """Band count, dtype and size of every file; the archive's (bands, dtype) is the most common.

        Returns the unreadable files and those whose band count or dtype differs.
        """
        problems: list[Problem] = []
        headers: dict[Path, tuple[int, str]] = {}
        self._sizes = Counter()
        for path in files or self.files:
            if path not in self._headers:  # read each header once
                try:
                    self._headers[path] = _header(path)
                except DatasetError as err:
                    self._headers[path] = err.problems[0] if err.problems else (str(path), str(err))
            header = self._headers[path]
            if len(header) == 2:  # a Problem
                problems.append(header)
                continue
            bands, dtype, h, w, descriptions = header
            headers[path] = (bands, dtype)
            self._sizes[(h, w)] += 1
            if descriptions and self._descriptions is None:
                self._descriptions = descriptions
        if not headers:
            return problems
        self._header = Counter(headers.values()).most_common(1)[0][0]
        bands, dtype = self._header
        for path, (b, d) in headers.items():
            if b != bands:
                problems.append(
                    (
                        str(path),
                        f"has {b} bands, but most images of the archive have {bands}. Fix: "
                        "give every image the same bands, or move this one out of the folder",
                    )
                )
            elif d != dtype:
                problems.append(
                    (
                        str(path),
                        f"has dtype {d}, but most images of the archive are {dtype}. Fix: "
                        "convert it to the archive's dtype, or move it out of the folder",
                    )
                )
        self.band_names = tuple(self._band_names(bands))
        return problems

    def _band_names(self, bands: int) -> list[str]:
        if self.given_band_names:
            if len(self.given_band_names) != bands:
                raise ConfigError(
                    f"The 'band_names' parameter of FolderReader names {len(self.given_band_names)} "
                    f"bands, but the images have {bands}. Give one name per band."
                )
            return list(self.given_band_names)
        described = self._descriptions
        if described and len(described) == bands and all(described) and len(set(described)) == bands:
            return list(described)
        return ["R", "G", "B"] if bands == 3 else [f"B{k + 1}" for k in range(bands)]

    def _read_labels(self, by_id: dict[str, Path], problems: list[Problem]) -> dict[str, tuple[str, list[str], str]]:
        """``{id: (file:line, class names, split)}`` of the label rows; bad rows go to ``problems``.

        An image whose row is bad gets the names ``["\\0bad"]``: ``scan`` leaves it out
        rather than treating it as unlabeled.
        """
        path = self.labels_path
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip() for f in reader.fieldnames or []]
        reader.fieldnames = fields
        key = "id" if "id" in fields else "path" if "path" in fields else None
        if key is None or "labels" not in fields:
            raise DatasetError(
                f"{path} must have a header with the columns 'id' (or 'path') and 'labels' (class names joined "
                f"by ';'), and optionally 'split'. Found {fields}. Fix: add that header line."
            )
        by_path = {p.relative_to(self.root).as_posix(): sid for sid, p in by_id.items()}
        by_path.update({p.relative_to(self.root).with_suffix("").as_posix(): sid for sid, p in by_id.items()})
        rows: dict[str, tuple[str, list[str], str]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if None in row or row[key] is None or row["labels"] is None:  # too many fields, or too few
                problems.append((where, f"malformed row: expected {len(fields)} fields ({', '.join(fields)})"))
                continue
            ref = row[key].strip()
            sid = (
                ref
                if ref in by_id
                else by_path.get(ref.lstrip("./"), by_path.get(Path(ref).with_suffix("").as_posix()))
            )
            if sid is None:
                problems.append((where, f"label row without image: no image {ref!r} under {self.root}"))
                continue
            if sid in rows:
                problems.append((where, f"duplicate row for image {sid!r}, first at {rows[sid][0]}"))
                rows[sid] = (rows[sid][0], ["\0bad"], "")  # which row is right? leave the image out
                continue
            split = SPLIT_VALUES.get((row.get("split") or "").strip().lower())
            if split is None:
                problems.append((where, f"split {row['split']!r} is not one of train, val, test (or empty)"))
                rows[sid] = (where, ["\0bad"], "")
                continue
            names = [n.strip() for n in row["labels"].split(";") if n.strip()]
            rows[sid] = (where, sorted(set(names), key=names.index), split)
        return rows

    def _class_names(self, rows: dict[str, tuple[str, list[str], str]]) -> list[str]:
        if self.classes_path is not None:
            names = [ln.strip() for ln in self.classes_path.read_text(encoding="utf-8-sig").splitlines()]
            names = [n for n in names if n and not n.startswith("#")]
            where = str(self.classes_path)
        elif self._classes_arg is not None:
            names, where = [str(n) for n in self._classes_arg], "the 'classes' parameter"
        else:
            names, where = sorted({n for _, labels, _ in rows.values() for n in labels}), str(self.labels_path)
        duplicates = sorted(n for n, k in Counter(names).items() if k > 1)
        if duplicates:
            raise DatasetError(f"{where} names the classes {duplicates} more than once. Fix: list each class once.")
        if not names:
            raise ConfigError(
                f"The folder archive at {self.root} has no class names: no classes file and no labels "
                f"({where if self.labels_path else 'no labels CSV'}). Fix: pass --classes classes.txt (one name a "
                "line), or --labels labels.csv with some labeled images."
            )
        return names

    # -- pixels ------------------------------------------------------------------
    def load_image(self, path: str | Path) -> np.ndarray:
        """uint8 [H, W, B] at native size, converted by the archive's rule (see ``scaling()``)."""
        raw = self.load_raw(path)
        return self._convert(raw, path)

    def load_raw(self, path: str | Path) -> np.ndarray:
        """The file's pixels as stored, [H, W, B] of the archive's dtype; NaN/inf filled or refused."""
        bands, dtype = self._archive_header()
        data = _read_pixels(Path(path), self)
        if data.shape[2] != bands or data.dtype.name != dtype:
            raise self._bad_file(
                path, f"has {data.shape[2]} bands of {data.dtype.name}, the archive's images have {bands} of {dtype}"
            )
        if data.dtype.kind == "f":
            finite = np.isfinite(data)
            if not finite.all():
                if self.nan_fill is None:
                    raise self._bad_file(
                        path,
                        f"has {int((~finite).sum())} NaN/inf pixels. Fix: fill them in the "
                        "file, or pass --nan-fill VALUE (nan_fill) to replace them",
                    )
                data = np.where(finite, data, self.nan_fill)
        return data

    def conversion(self) -> str:
        """The resolved conversion method: ``none``, ``range`` or ``percentile``."""
        if self.scaling_method is not None:
            return self.scaling_method
        return "none" if self._archive_header()[1] == "uint8" else "percentile"

    def _archive_header(self) -> tuple[int, str]:
        """``(bands, dtype)`` of most of the archive's images; DatasetError when none can be read."""
        if self._header is None:
            problems = self._read_headers([])
            if self._header is None:
                raise DatasetError(
                    f"None of the {len(self.files)} image files under {self.root} can be read. "
                    "Fix: check that they are GeoTIFF, PNG or JPEG files.",
                    problems,
                )
        return self._header

    def fit_conversion(self, paths: Sequence[str]) -> None:
        """Fix the per-band range of the conversion; ``"percentile"`` reads up to ``stats_images`` of ``paths``."""
        method = self.conversion()
        bands, dtype = self._archive_header()
        if method == "none":
            if dtype != "uint8":
                raise ConfigError(
                    f"scaling='none' keeps uint8 pixels as they are, but the archive at {self.root} is {dtype}. "
                    "Fix: pass --scaling percentile, or --scaling range --value-range LO,HI."
                )
            return
        if method == "range" or self.value_range is not None:  # fixed, or percentiles known already
            lo, hi = self.value_range[:, 0], self.value_range[:, 1]
            if len(lo) == 1:
                lo, hi = np.repeat(lo, bands), np.repeat(hi, bands)
            if len(lo) != bands:
                raise ConfigError(
                    f"The 'value_range' parameter of FolderReader gives {len(lo)} ranges for {bands} "
                    "bands: give one [lo, hi] for all bands or one per band."
                )
            self._lo, self._hi = lo.astype(np.float64), hi.astype(np.float64)
            return
        chosen = list(paths)
        if len(chosen) > self.stats_images:
            chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, self.stats_images).round().astype(int)]
        samples = []
        for path in chosen:
            try:
                raw = self.load_raw(path)
            except DatasetError:
                continue  # prepare reports it when it reads the image again
            flat = raw.reshape(-1, bands)
            samples.append(flat[:: max(1, len(flat) // 4096)].astype(np.float64))
        if not samples:
            raise DatasetError(
                f"No image of the folder archive at {self.root} could be read to compute the "
                "percentiles. Fix: check the files (see the problems prepare lists)."
            )
        stacked = np.concatenate(samples)
        lo, hi = np.percentile(stacked, self.percentiles, axis=0)
        self._lo, self._hi, self._images_used = lo, np.maximum(hi, lo + 1e-6), len(samples)

    def _convert(self, raw: np.ndarray, path: str | Path) -> np.ndarray:
        if self.conversion() == "none":
            return np.ascontiguousarray(raw)
        if self._lo is None:
            if self.conversion() == "percentile" and self.value_range is None:
                raise ConfigError(
                    "FolderReader.load_image with scaling 'percentile' needs the archive's "
                    "percentiles: call fit_conversion(paths) first (prepare does)."
                )
            self.fit_conversion([])
        scaled = (raw.astype(np.float64) - self._lo) / (self._hi - self._lo)
        return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)

    # -- manifest ----------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        self._archive_header()  # band names and dtype come from the files
        return {
            "labels": str(self.labels_path) if self.labels_path else None,
            "classes": list(self.classes),
            "scaling": self.conversion(),
            "value_range": self._recorded_range(),
            "percentiles": list(self.percentiles),
            "nan_fill": self.nan_fill,
            "id_from": self.id_from,
            "band_names": list(self.band_names),
            "val_share": self.val_share,
            "test_share": self.test_share,
            "rgb_bands": self._checked_rgb_bands(),
        }

    def _checked_rgb_bands(self) -> list[str] | None:
        """``rgb_bands`` once it is known to name three of the archive's bands (ConfigError otherwise)."""
        if self.rgb_bands is not None:
            from raydal.al.thumbnails import choose_rgb_bands

            choose_rgb_bands(self.band_names, self.rgb_bands)
        return self.rgb_bands

    def _recorded_range(self) -> list[list[float]] | None:
        """The range to rebuild this reader with: the given one, or the fitted percentiles."""
        if self.conversion() == "percentile" and self._lo is not None:
            return [[float(a), float(b)] for a, b in zip(self._lo, self._hi)]
        return None if self.value_range is None else self.value_range.tolist()

    def scaling(self) -> dict[str, Any]:
        method = self.conversion()
        out: dict[str, Any] = {"method": method, "source_dtype": self._archive_header()[1], "nan_fill": self.nan_fill}
        if method == "none":
            return out
        out.update(
            {
                "lo": [float(v) for v in self._lo],
                "hi": [float(v) for v in self._hi],
                "formula": "uint8 = round(clip((x - lo[b]) / (hi[b] - lo[b]), 0, 1) * 255) per band b",
            }
        )
        if method == "percentile" and self._images_used:
            out.update(percentiles=list(self.percentiles), images_used=self._images_used)
        elif method == "percentile":
            out.update(percentiles=list(self.percentiles), given=True)
        return out

    def holdout_shares(self) -> tuple[float, float]:
        return self.val_share, self.test_share


def _parse_range(value: Any) -> np.ndarray:
    """``[lo, hi]`` or ``[[lo, hi], ...]`` -> float64 [K, 2] with lo < hi."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        arr = None
    if arr is None or not len(arr) or not np.isfinite(arr).all() or (arr[:, 0] >= arr[:, 1]).any():
        raise param_error("value_range", "FolderReader", "[lo, hi] (or one per band) with finite lo < hi", value)
    return arr


def _header(path: Path) -> tuple[int, str, int, int, list[str]]:
    """``(bands, dtype, height, width, band descriptions)`` of an image file, without its pixels."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import rasterio
        from rasterio.errors import RasterioError

        _ignore_not_georeferenced()
        try:
            with rasterio.open(path) as src:
                return src.count, src.dtypes[0], src.height, src.width, [d or "" for d in src.descriptions]
        except RasterioError as err:
            raise DatasetError("Bad image.", [(str(path), f"cannot be read as a TIFF ({_error_text(err)})")]) from err
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = _PIL_CONVERT.get(im.mode, im.mode)
            probe = np.asarray(Image.new(mode, (1, 1)))
            return (1 if probe.ndim == 2 else probe.shape[2]), probe.dtype.name, im.height, im.width, []
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DatasetError("Bad image.", [(str(path), f"cannot be read as an image ({err})")]) from err


def _read_pixels(path: Path, reader: FolderReader) -> np.ndarray:
    """[H, W, B] pixels of an image file in its stored dtype."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import rasterio
        from rasterio.errors import RasterioError

        _ignore_not_georeferenced()
        try:
            with rasterio.open(path) as src:
                data = src.read()
        except RasterioError as err:
            raise reader._bad_file(path, f"cannot be read as a TIFF ({_error_text(err)})") from err
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in _PIL_CONVERT:
                im = im.convert(_PIL_CONVERT[im.mode])
            data = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise reader._bad_file(path, f"cannot be read as an image ({err})") from err
    return data[..., None] if data.ndim == 2 else data
