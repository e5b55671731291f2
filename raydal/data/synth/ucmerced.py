"""Fake UC Merced multi-label archive in the published layout, with the real labels.

Writes ``UCMerced_LandUse/Images/<scene>/<scene>NN.tif`` (uncompressed 8-bit RGB,
no georeference; a few at the odd sizes seen in the real archive, scaled to
``size``) and ``LandUse_Multilabeled.txt`` (tab-separated, CRLF line ends).

The label matrix is the real one: ``ucmerced_multilabels.txt`` beside this
module is the published multi-label annotation of the 2,100 images (Chaudhuri
et al., "Multilabel remote sensing image retrieval using a semisupervised
graph-theoretic method", IEEE TGRS 2018, as distributed by TU Berlin's BigEarth
group in ``multilabels.zip``), copied unchanged. Generated image ``<scene>NN``
carries exactly the labels of the real ``<scene>NN``, so label counts, labels
per image and co-occurrence are the real ones at n = 2100. A smaller ``n``
takes the same share of every scene's images, evenly spaced (``real_names``).
The images of a scene are near-duplicates (one painter group per scene), and
an image's labels share the painter's whole grid (``fill_grid``), so its
textured area does not grow with its label count.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from raydal.data.synth import register_generator
from raydal.data.synth._tiff import write_tif
from raydal.data.synth.painter import Knobs, paint, paint_chunks, sample_grades
from raydal.data.ucmerced import UCMercedReader as Reader
from raydal.exceptions import ConfigError

DEFAULT_N = 2100
DEFAULT_SIZE = 256
IMAGES_PER_SCENE = 100
#: The packaged copy of the real annotation (see the module docstring).
LABEL_MATRIX = "ucmerced_multilabels.txt"
#: ``synthesize`` arguments for the archive of the paper's difficulty, calibrated on random sampling
#: only (docs/data.md, "Calibration"): every knob at ``difficulty`` 1 and the label marks' contrast
#: lowered to 0.3 (from 0.4). At the fidelity study's cpu protocol (840 images at 32 px, smallcnn,
#: 40 initial labels, b = 20) random sampling reaches 78.0 / 77.5 / 78.1% micro-F1 at 200 labels
#: (seeds 0, 1, 2) and 85.1% at 400 (seed 0), the paper's random baseline on the real archive
#: (~78% at 200, ~85% at 400). ``synthesize("ucmerced", out, **CALIBRATED)``; without them the
#: archive keeps ``synthesize``'s default difficulty (0.3), much easier (~94% at 200 labels).
CALIBRATED = {"difficulty": 1.0, "contrast": 0.3}
#: Odd image sizes (H, W) of the real archive, relative to its nominal 256.
ODD_SHAPES = ((256, 249), (247, 247), (254, 254), (248, 248))


@cache
def real_labels() -> tuple[tuple[str, ...], np.ndarray]:
    """The real annotation: image names (``agricultural00`` ...) and uint8 [2100, 17] labels in
    ``Reader.classes`` order, read from the packaged ``ucmerced_multilabels.txt``."""
    text = resources.files(__package__).joinpath(LABEL_MATRIX).read_text(encoding="utf-8")
    header, *lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    columns = [header[1:].index(name) for name in Reader.classes]
    names = tuple(cells[0] for cells in lines)
    labels = np.array([cells[1:] for cells in lines], dtype=np.uint8)[:, columns]
    labels.setflags(write=False)
    return names, labels


def real_names(n: int) -> list[str]:
    """The names of the real images that an archive of ``n`` images holds, in write order.

    Image i belongs to scene ``i % 21`` (round-robin, so every scene gets n // 21
    or one more images); the k images of a scene are its real images
    ``round(j * 100 / k)``, j = 0..k-1: evenly spaced, always including ``<scene>00``,
    and all 100 at n = 2100. The real archive shows no trend of the label count
    with the image number within a scene (Spearman 0.005 over the 2,100 images),
    so evenly spaced rows are as representative as random ones, and an archive of
    a given n holds the same images whatever its seed.
    """
    scenes = np.arange(n) % len(Reader.scenes)
    within = np.arange(n) // len(Reader.scenes)
    per_scene = np.bincount(scenes, minlength=len(Reader.scenes))
    numbers = np.floor(within * IMAGES_PER_SCENE / per_scene[scenes] + 0.5).astype(int)
    return [f"{Reader.scenes[s]}{k:02d}" for s, k in zip(scenes, numbers)]


@register_generator("ucmerced")
def write_archive(
    out_dir: Path, n: int | None, size: int | None, rng: np.random.Generator, difficulty: float, **knobs: float
) -> None:
    """Write a fake archive of ``n`` images of about ``size`` x ``size`` px into ``out_dir``. ``knobs``:
    painter knobs (``painter.Knobs`` fields) that replace what ``difficulty`` sets."""
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    max_n = IMAGES_PER_SCENE * len(Reader.scenes)
    if not 1 <= n <= max_n:
        raise ConfigError(
            f"The 'n' parameter of the ucmerced generator must be an int in [1, {max_n}]. Got {n} instead."
        )
    all_names, all_labels = real_labels()
    row_of = {name: row for row, name in enumerate(all_names)}
    names = real_names(n)
    labels = all_labels[[row_of[name] for name in names]]
    scenes = np.arange(n) % len(Reader.scenes)
    unknown = sorted(set(knobs) - {f.name for f in dataclasses.fields(Knobs)})
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {unknown} for the ucmerced generator. Fix: use the painter knobs "
            f"{[f.name for f in dataclasses.fields(Knobs)]}."
        )
    look = dataclasses.replace(Knobs.of(difficulty), **knobs)
    look.check()
    grades = sample_grades(labels, rng, difficulty, share=look.hard_share)
    bands = len(Reader.band_names)
    key = int(rng.integers(1 << 62))

    odd = {
        int(i): ODD_SHAPES[k] for k, i in enumerate(rng.choice(n, size=min(len(ODD_SHAPES), n // 10), replace=False))
    }
    images_dir = out_dir / Reader.images_dir
    chunks = paint_chunks(
        labels,
        (size, size),
        bands,
        rng,
        difficulty,
        groups=scenes,
        grades=grades,
        group_key=key,
        fill_grid=True,
        knobs=look,
    )
    for start, images in chunks:
        for i, image in enumerate(images, start):
            if i in odd:
                shape = tuple(max(4, round(side * size / 256)) for side in odd[i])
                one = (grades[0][i : i + 1], grades[1][i : i + 1])
                image = paint(
                    labels[i : i + 1], shape, bands, rng, difficulty, scenes[i : i + 1], one, key, True, look
                )[0]
            write_tif(images_dir / Reader.scenes[scenes[i]] / f"{names[i]}.tif", image, photometric="RGB")

    header = "\t".join([Reader.header_first_cell, *Reader.classes])
    rows = ["\t".join([name, *map(str, row)]) for name, row in zip(names, labels)]
    (out_dir / Reader.label_file).write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
