"""Fake UC Merced multi-label archive in the published layout.

Writes ``UCMerced_LandUse/Images/<scene>/<scene>NN.tif`` (uncompressed 8-bit RGB,
no georeference; a few at the odd sizes seen in the real archive, scaled to
``size``) and ``LandUse_Multilabeled.txt`` (tab-separated, CRLF line ends).
Images are spread over the 21 scene folders round-robin, so ``n`` is at most
2100 (21 scenes x 100).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raydal.data.synth._tiff import write_tif
from raydal.data.synth.painter import paint, paint_chunks, sample_labels
from raydal.data.ucmerced import UCMercedReader as Reader
from raydal.exceptions import ConfigError

DEFAULT_N = 2100
DEFAULT_SIZE = 256
#: Image counts per class in the real 2100-image archive: a few common, many rare.
REAL_COUNTS = (100, 718, 691, 886, 115, 105, 100, 104, 975, 102, 1300, 294, 100, 102, 100, 1009, 203)
#: Odd image sizes (H, W) of the real archive, relative to its nominal 256.
ODD_SHAPES = ((256, 249), (247, 247), (254, 254), (248, 248))


def write_archive(out_dir: Path, n: int | None, size: int | None, rng: np.random.Generator, difficulty: float) -> None:
    """Write a fake archive of ``n`` images of about ``size`` x ``size`` px into ``out_dir``."""
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    max_n = 100 * len(Reader.scenes)
    if not 1 <= n <= max_n:
        raise ConfigError(f"The 'n' parameter of the ucmerced generator must be an int in [1, {max_n}]. Got {n} instead.")
    names = [f"{Reader.scenes[i % len(Reader.scenes)]}{i // len(Reader.scenes):02d}" for i in range(n)]
    labels = sample_labels(n, np.array(REAL_COUNTS) / 2100, rng)
    bands = len(Reader.band_names)

    odd = {int(i): ODD_SHAPES[k] for k, i in enumerate(rng.choice(n, size=min(len(ODD_SHAPES), n // 10), replace=False))}
    images_dir = out_dir / Reader.images_dir
    for start, images in paint_chunks(labels, (size, size), bands, rng, difficulty):
        for i, image in enumerate(images, start):
            if i in odd:
                shape = tuple(max(4, round(side * size / 256)) for side in odd[i])
                image = paint(labels[i : i + 1], shape, bands, rng, difficulty)[0]
            scene = Reader.scenes[i % len(Reader.scenes)]
            write_tif(images_dir / scene / f"{names[i]}.tif", image, photometric="RGB")

    header = "\t".join([Reader.header_first_cell, *Reader.classes])
    rows = ["\t".join([name, *map(str, row)]) for name, row in zip(names, labels)]
    (out_dir / Reader.label_file).write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
