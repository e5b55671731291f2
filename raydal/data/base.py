"""What every archive reader provides: an index of images and labels, and image loading."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raydal.exceptions import DatasetError, DatasetNotFoundError

#: What to tell a user whose archive holds a bad file.
BAD_FILE_FIX = "re-download the file, or pass --skip-bad (skip_bad=True) to quarantine it"

#: A problem found in an archive: ``(file or file:row, reason)``.
Problem = tuple[str, str]


@dataclass
class ArchiveIndex:
    """Every usable image of an archive with its labels.

    ``ids``, ``paths``, ``labels`` and ``splits`` are aligned: row ``i`` of each
    describes the same image.
    """

    dataset: str
    classes: list[str]  # C class names, the column order of ``labels``
    band_names: list[str]  # B band names, the last axis of every loaded image
    ids: list[str]  # N unique image ids
    paths: list[str]  # N paths handed to ``ArchiveReader.load_image``
    labels: np.ndarray  # uint8 [N, C] multi-hot
    splits: list[str] = field(default_factory=list)  # N: "train", "val", "test" or ""
    #: bool [N]: False for an image without labels yet (a pool image for annotators;
    #: only the ``folder`` reader has such images). Default: every image labeled.
    labeled: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not self.splits:
            self.splits = [""] * n
        self.labels = np.asarray(self.labels, dtype=np.uint8).reshape(n, len(self.classes))
        self.labeled = np.ones(n, dtype=bool) if self.labeled is None else np.asarray(self.labeled, dtype=bool)
        if not (len(self.paths) == len(self.splits) == len(self.labeled) == n):
            raise ValueError(
                f"ArchiveIndex fields must be aligned: {n} ids, {len(self.paths)} paths, "
                f"{len(self.splits)} splits, {len(self.labeled)} labeled flags."
            )

    def __len__(self) -> int:
        return len(self.ids)


class ArchiveReader:
    """Base class of the archive readers (one subclass per dataset, see ``raydal.data``).

    Subclasses set the class constants, implement ``_check_layout``, ``scan`` and
    ``load_image``. The constructor only checks that the archive is there; nothing
    is read until ``index()`` or ``load_image()`` is called.
    """

    #: Registry name, e.g. ``"ucmerced"``.
    name: ClassVar[str]
    #: Class names in label-column order (C).
    classes: ClassVar[tuple[str, ...]]
    #: Band names of loaded images, the last image axis (B).
    band_names: ClassVar[tuple[str, ...]]
    #: Side in pixels that ``raydal prepare`` resizes to when no size is given.
    default_size: ClassVar[int]
    #: How the folder that ``root`` must point at looks, for error messages.
    layout_hint: ClassVar[str]
    #: The reader's settings, the constructor's keyword arguments after ``root``: a dataclass
    #: declaring each with ``raydal.settings.setting`` (default, range or choices, help, flag),
    #: whose defaults the constructor's signature reads. ``raydal prepare`` derives its flags
    #: from it. None: the reader takes no settings.
    Settings: ClassVar[type | None] = None

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise self._not_found(self.root)
        self._check_layout()

    # -- what subclasses provide -------------------------------------------------
    def _check_layout(self) -> None:
        """Raise ``DatasetNotFoundError`` when the archive's marker files are missing."""
        raise NotImplementedError

    def scan(self) -> tuple[ArchiveIndex, list[Problem]]:
        """Index the archive, collecting problems instead of raising.

        Returns the index of every image whose labels are usable, and the
        ``(location, reason)`` of every label row or file that is not (image without
        labels, label row without image, unknown class name, malformed row).
        Image pixels are not read here: ``load_image`` checks those.
        """
        raise NotImplementedError

    def load_image(self, path: str | Path) -> np.ndarray:
        """Read one image as uint8 [H, W, B] (B = ``len(band_names)``), native size.

        Raises ``DatasetError`` naming the file when it is corrupt, truncated, or has
        the wrong band count or dtype.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The reader settings, as recorded in a shard manifest: the constructor's keyword
        arguments, so ``get_reader(name, root, **settings)`` rebuilds the reader (thumbnails do)."""
        return {}

    def scaling(self) -> dict[str, Any]:
        """How source pixel values become uint8, as recorded in a shard manifest."""
        return {"method": "none", "source_dtype": "uint8"}

    def fit_conversion(self, paths: list[str]) -> None:
        """Fix the uint8 conversion from the archive's images before any is packed.

        ``prepare`` calls it with the paths of the indexed images. Readers with a
        fixed rule (the published archives) need nothing; the ``folder`` reader
        computes per-band percentiles here.
        """

    def holdout_shares(self) -> tuple[float, float] | None:
        """``(val, test)`` shares of the labeled images held out where the archive publishes
        no split; None: ``raydal.data.shards``' defaults."""
        return None

    # -- shared behaviour ----------------------------------------------------------
    def index(self) -> ArchiveIndex:
        """Index the archive; raise one ``DatasetError`` listing every bad label row or file."""
        index, problems = self.scan()
        if problems:
            raise DatasetError(
                f"The {self.name} archive at {self.root} has {len(problems)} bad label rows or "
                f"files. Fix: {BAD_FILE_FIX}.",
                problems,
            )
        return index

    def _make_index(
        self, ids: list[str], paths: list[str], labels: list[np.ndarray], splits: list[str] | None = None
    ) -> ArchiveIndex:
        """The ``ArchiveIndex`` of the good rows: ``labels`` is a list of uint8 [C] rows."""
        return ArchiveIndex(
            dataset=self.name,
            classes=list(self.classes),
            band_names=list(self.band_names),
            ids=ids,
            paths=paths,
            labels=np.array(labels, dtype=np.uint8).reshape(len(ids), len(self.classes)),
            splits=list(splits or []),
        )

    def _not_found(self, missing: Path) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"No {self.name} archive found: looked for {missing}. The archive folder must hold "
            f"{self.layout_hint}. Fix: point --data-root (the `root` argument) at the folder "
            f"that holds the archive, or write a fake one with `raydal synth {self.name} {self.root}`."
        )

    def _bad_file(self, path: str | Path, reason: str) -> DatasetError:
        return DatasetError(f"Bad {self.name} image. Fix: {BAD_FILE_FIX}.", [(str(path), reason)])

    def _read_tif(
        self,
        path: str | Path,
        bands: int,
        dtype: str,
        native_shape: tuple[int, int] | None = None,
        out_shape: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Read a GeoTIFF as [H, W, bands] of ``dtype``.

        ``native_shape`` (H, W), when given, is the size the file must have;
        ``out_shape`` (H, W) resamples it bilinearly. Raises ``DatasetError`` naming
        the file for unreadable files and wrong band counts, dtypes or sizes.
        """
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioError

        _ignore_not_georeferenced()
        try:
            with rasterio.open(path) as src:
                if src.count != bands:
                    raise self._bad_file(path, f"has {src.count} bands, expected {bands}")
                if src.dtypes[0] != dtype:
                    raise self._bad_file(path, f"has dtype {src.dtypes[0]}, expected {dtype}")
                if native_shape is not None and (src.height, src.width) != tuple(native_shape):
                    raise self._bad_file(
                        path,
                        f"is {src.height}x{src.width} px, expected {native_shape[0]}x{native_shape[1]}",
                    )
                if out_shape is None:
                    data = src.read()
                else:
                    data = src.read(out_shape=(bands, *out_shape), resampling=Resampling.bilinear)
        except RasterioError as err:
            raise self._bad_file(path, f"cannot be read as a TIFF ({_error_text(err)})") from err
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))


def _error_text(err: BaseException) -> str:
    """The messages of an exception and of the ones it was raised from (GDAL chains them)."""
    texts: list[str] = []
    link: BaseException | None = err
    while link is not None and len(texts) < 4:
        text = str(link).strip()
        if text and text not in texts and not text.startswith("Read failed. See previous"):
            texts.append(text)
        link = link.__cause__ or link.__context__
    return "; ".join(texts) or type(err).__name__


def _ignore_not_georeferenced() -> None:
    """Silence rasterio's NotGeoreferencedWarning: UC Merced has no georeference by design.

    A process-wide filter (re-added on every read: test runners reset filters),
    because ``warnings.catch_warnings`` is not thread-safe and images are loaded
    in threads.
    """
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
