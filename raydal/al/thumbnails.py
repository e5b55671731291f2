"""Thumbnails an annotator can read: true colour from the archive's own bands.

A thumbnail is made from the original image, read through the dataset's reader
at native resolution (the shard's ``path`` column names the file), not from the
shrunken shard copy. When the original is not readable (the archive moved, a
reader that cannot be rebuilt from the manifest), the shard image is used
instead and the caller is told.

Colour: R, G and B are picked by band name; one linear stretch, shared by the
three bands, maps the 2nd-98th percentile of all three together to 0-255, so
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

#: R, G, B band names per naming scheme (compared case-insensitively).
RGB_NAMES = (("R", "G", "B"), ("Red", "Green", "Blue"), ("B04", "B03", "B02"), ("B4", "B3", "B2"))
#: Percentiles (of the three RGB bands together) mapped to black and white.
STRETCH_PERCENTILES = (2.0, 98.0)
#: The most a stretch may multiply contrast by (uint8 in, uint8 out).
MAX_GAIN = 4.0
#: Thumbnails larger than this (longer side, px) are shrunk; smaller ones keep native size.
DEFAULT_MAX_SIDE = 512


def rgb_band_indices(band_names: Sequence[str]) -> list[int]:
    """Indices of the R, G, B bands in ``band_names``.

    Known names first (``RGB_NAMES``); otherwise the first three bands, or the
    first band three times (grey) for images with fewer than three bands.
    """
    lower = [str(n).lower() for n in band_names]
    for names in RGB_NAMES:
        wanted = [n.lower() for n in names]
        if all(n in lower for n in wanted):
            return [lower.index(n) for n in wanted]
    return [0, 1, 2] if len(band_names) >= 3 else [0, 0, 0]


def true_colour(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """uint8 [H, W, B] -> uint8 [H, W, 3]: R, G, B with one stretch shared by the three bands.

    The same ``a * x + b`` maps every band, so band ratios (differences from
    the black point) are kept; see the module docstring for the gain cap.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, B]; got shape {image.shape}")
    rgb = image[..., rgb_band_indices(band_names)].astype(np.float32)
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

    def load(self, path: str) -> np.ndarray | None:
        if self._reader is None:
            self.failures.append((path, self._why_not))
            return None
        if not path:
            self.failures.append((path, "the shard row has no path"))
            return None
        try:
            image = np.asarray(self._reader.load_image(Path(path)))
        except Exception as err:  # a moved or unreadable original: use the shard image
            self.failures.append((path, str(err).splitlines()[0]))
            return None
        if image.ndim != 3 or image.dtype != np.uint8:
            self.failures.append((path, f"the reader gave {image.dtype} {image.shape}, not uint8 [H, W, B]"))
            return None
        return image
