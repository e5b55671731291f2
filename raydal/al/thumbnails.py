"""Thumbnails an annotator can read: true colour from the archive's own bands.

A thumbnail is made from the original image, read through the dataset's reader
at native resolution (the shard's ``path`` column names the file), not from the
shrunken shard copy. When the original is not readable (the archive moved, a
reader that cannot be rebuilt from the manifest), the shard image is used
instead and the caller is told.

Bands (:func:`choose_rgb_bands`): ``--rgb-bands`` (at ``prepare folder``, kept in
the manifest, or at ``export``) names them; else R, G and B are picked by band
name; a folder archive whose files name no bands (``B1..Bn``) shows bands 1, 2, 3
(an R, G, B[, NIR] file) up to 4 bands and 4, 3, 2 (Sentinel-2 and Landsat 8
numbering) from 5 bands on. :class:`Thumbnails` says which bands it shows and why.

Colour: the three bands are brought to one scale first. A folder archive of
uint16 or float pixels is scaled to uint8 *per band* in its shards (each band's own
percentiles: ``raydal.data.folder``), which would make a vegetation patch (high
green and NIR, low red) any colour; the thumbnail therefore reads the source
pixels (or, from a shard image, undoes the per-band scaling the manifest
records) and maps R, G and B by one linear map. Then one linear stretch, shared by
the three bands, maps the 2nd-98th percentile of all three together to 0-255, so
the bands keep their relative brightness (a water patch stays dark blue-grey,
it does not turn into per-band-stretched coloured noise). The stretch never
raises contrast more than ``MAX_GAIN`` times: a nearly uniform patch keeps its
own brightness instead of having its noise blown up to full range.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raydal.exceptions import ConfigError

#: R, G, B band names per naming scheme (compared case-insensitively).
RGB_NAMES = (("R", "G", "B"), ("Red", "Green", "Blue"), ("B04", "B03", "B02"), ("B4", "B3", "B2"))
#: Percentiles (of the three RGB bands together) mapped to black and white.
STRETCH_PERCENTILES = (2.0, 98.0)
#: The most a stretch may multiply contrast by (uint8 in, uint8 out).
MAX_GAIN = 4.0
#: Thumbnails larger than this (longer side, px) are shrunk; smaller ones keep native size.
DEFAULT_MAX_SIDE = 512


def choose_rgb_bands(band_names: Sequence[str], rgb_bands: Sequence[str] | str | None = None) -> tuple[list[int], str]:
    """``(indices of the R, G, B bands in band_names, why those)``.

    ``rgb_bands``: three band names (any case) or 1-based band numbers, or a string of
    them joined by commas (``--rgb-bands 3,2,1`` or ``--rgb-bands red,green,blue``).
    Without it: known names (``RGB_NAMES``); the placeholder names ``B1..Bn`` of files
    that name no bands (see the module docstring); any other names: the first three
    bands; the first band three times (grey) for images with fewer than three bands.

    Raises:
        ConfigError: ``rgb_bands`` does not name three distinct bands of the archive.
    """
    names = [str(n) for n in band_names]
    lower = [n.lower() for n in names]
    if rgb_bands is not None:
        given = [str(b).strip() for b in (rgb_bands.split(",") if isinstance(rgb_bands, str) else rgb_bands)]
        picked = [
            lower.index(b.lower()) if b.lower() in lower else int(b) - 1 if b.isdigit() else -1 for b in given
        ]  # a name first: a band may be named "1"
        if len(picked) != 3 or len(set(picked)) != 3 or not all(0 <= i < len(names) for i in picked):
            raise ConfigError(
                f"The 'rgb_bands' parameter must name 3 distinct bands of {names}, by name or by "
                f"1-based number, in R, G, B order. Got {','.join(given)!r} instead."
            )
        return picked, "chosen with --rgb-bands"
    placeholders = names == [f"B{k + 1}" for k in range(len(names))]
    if placeholders and 3 <= len(names) <= 4:
        return [0, 1, 2], (
            "the files name no bands, so bands 1, 2, 3 are taken as R, G, B (an R, G, B[, NIR] "
            "file); if they are not, pass --rgb-bands"
        )
    for candidates in RGB_NAMES:
        wanted = [n.lower() for n in candidates]
        if all(n in lower for n in wanted):
            why = (
                "by band name"
                if not placeholders
                else (
                    "the files name no bands, so bands 4, 3, 2 are taken as R, G, B (Sentinel-2 and Landsat 8 "
                    "numbering); if they are not, pass --rgb-bands"
                )
            )
            return [lower.index(n) for n in wanted], why
    if len(names) >= 3:
        return [0, 1, 2], "no band is named R, G or B: the first three bands are shown; pass --rgb-bands to choose"
    return [0, 0, 0], "fewer than three bands: the first band is shown in grey"


def rgb_band_indices(band_names: Sequence[str]) -> list[int]:
    """Indices of the R, G, B bands in ``band_names`` (:func:`choose_rgb_bands` without a choice)."""
    return choose_rgb_bands(band_names)[0]


def true_colour(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """uint8 [H, W, B] -> uint8 [H, W, 3]: R, G, B with one stretch shared by the three bands.

    The same ``a * x + b`` maps every band, so band ratios (differences from
    the black point) are kept; see the module docstring for the gain cap.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, B]; got shape {image.shape}")
    return shared_stretch(image[..., rgb_band_indices(band_names)])


def shared_stretch(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] on a 0..255 scale common to the three bands (any float or int dtype) ->
    uint8 [H, W, 3] under one linear stretch (see the module docstring)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(rgb, STRETCH_PERCENTILES))
    span, min_span = hi - lo, 255.0 / MAX_GAIN
    if span < min_span:
        # Widen the window to min_span, keeping the patch where it sits in 0..255:
        # a dark patch stays dark, a bright one bright.
        below = lo / max(255.0 - span, 1e-6)
        lo -= (min_span - span) * below
        span = min_span
    out = (rgb - lo) * (255.0 / span)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> bytes:
    """PNG of uint8 [H, W, 3], shrunk (aspect kept) when its longer side exceeds ``max_side``."""
    from PIL import Image

    img = Image.fromarray(rgb, mode="RGB") if rgb.ndim == 3 else Image.fromarray(rgb)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: an image a browser shows with no server behind it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class OriginalImages:
    """Reads originals through the reader recorded in a shard manifest, or says why it cannot.

    ``load(path)`` returns uint8 [H, W, B] at native size, or None (then
    ``failures`` holds the reason) so the caller falls back to the shard image.
    """

    def __init__(self, manifest: Any):
        self.failures: list[tuple[str, str]] = []
        self._reader = None
        self._why_not = ""
        try:
            from raydal.data import get_reader

            self._reader = get_reader(manifest.dataset, manifest.source_root, **(manifest.reader_settings or {}))
        except Exception as err:  # any reader error means: use the shard images
            self._why_not = f"the {manifest.dataset} archive at {manifest.source_root} cannot be opened ({err})"

    def load(self, path: str, source: bool = False) -> np.ndarray | None:
        """uint8 [H, W, B] as the shards convert it; ``source``: the file's own pixel values
        (any dtype) where the reader can give them (``load_raw``), else the uint8 image."""
        if self._reader is None:
            self.failures.append((path, self._why_not))
            return None
        if not path:
            self.failures.append((path, "the shard row has no path"))
            return None
        load = self._reader.load_raw if source and hasattr(self._reader, "load_raw") else self._reader.load_image
        try:
            image = np.asarray(load(Path(path)))
        except Exception as err:  # a moved or unreadable original: use the shard image
            self.failures.append((path, str(err).splitlines()[0]))
            return None
        if image.ndim != 3 or (image.dtype != np.uint8 and load == self._reader.load_image):
            self.failures.append((path, f"the reader gave {image.dtype} {image.shape}, not uint8 [H, W, B]"))
            return None
        return image


class Thumbnails:
    """True-colour thumbnails of one prepared archive: which bands, from which pixels, and why.

    Args:
        manifest: the shard set's manifest (``raydal.data.shards.Manifest``): band names,
            the recorded uint8 conversion (``scaling``) and the reader settings (a
            ``folder`` archive's ``rgb_bands`` from ``prepare --rgb-bands``).
        rgb_bands: overrides the bands (``raydal export --rgb-bands``; :func:`choose_rgb_bands`).
    """

    def __init__(self, manifest: Any, rgb_bands: Sequence[str] | str | None = None):
        chosen = rgb_bands if rgb_bands is not None else (manifest.reader_settings or {}).get("rgb_bands")
        self.bands, self.why = choose_rgb_bands(manifest.band_names, chosen)
        if rgb_bands is None and chosen is not None:
            self.why = "chosen with --rgb-bands at prepare"
        self.band_names = [manifest.band_names[i] for i in self.bands]
        self.originals = OriginalImages(manifest)
        scaling = manifest.scaling or {}
        #: per-band (lo, hi) of a per-band uint8 conversion (folder archives), None when one shared rule
        self._per_band = (
            (np.asarray(scaling["lo"], np.float64), np.asarray(scaling["hi"], np.float64))
            if "lo" in scaling and "hi" in scaling
            else None
        )

    def describe(self) -> str:
        """One line: the bands shown as R, G, B, why, and how they are scaled."""
        how = (
            "source pixel values, one linear map and one stretch for the three bands (the per-band scaling "
            "of the shards is not used)"
            if self._per_band is not None
            else "one stretch for the three bands"
        )
        return f"thumbnails show bands {', '.join(self.band_names)} as R, G, B ({self.why}); {how}"

    def rgb(self, path: str, shard_image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] of the original at ``path``, or of ``shard_image`` (uint8 [h, w, B])
        when the original cannot be read (``originals.failures`` says why)."""
        source = self.originals.load(path, source=self._per_band is not None)
        if source is None:
            return shared_stretch(self._common_scale(np.asarray(shard_image)[..., self.bands], undo=True))
        return shared_stretch(self._common_scale(source[..., self.bands], undo=False))

    def _common_scale(self, pixels: np.ndarray, undo: bool) -> np.ndarray:
        """float [H, W, 3] on one 0..255 scale for the three bands: the per-band conversion's
        source range (the lowest lo to the highest hi of the three) mapped to 0..255; ``undo``:
        ``pixels`` are per-band uint8 and are taken back to source units first."""
        if self._per_band is None:
            return pixels.astype(np.float32)
        lo, hi = self._per_band[0][self.bands], self._per_band[1][self.bands]
        values = pixels.astype(np.float64)
        if undo:
            values = lo + values / 255.0 * (hi - lo)
        low, high = float(lo.min()), float(hi.max())
        return np.clip((values - low) * (255.0 / max(high - low, 1e-12)), 0.0, 255.0).astype(np.float32)
