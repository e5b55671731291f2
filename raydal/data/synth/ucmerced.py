"""Fake UC Merced multi-label archive in the published layout.

Writes ``UCMerced_LandUse/Images/<scene>/<scene>NN.tif`` (uncompressed 8-bit RGB,
no georeference; a few at the odd sizes seen in the real archive, scaled to
``size``) and ``LandUse_Multilabeled.txt`` (tab-separated, CRLF line ends).
Images are spread over the 21 scene folders round-robin, so ``n`` is at most
2100 (21 scenes x 100).

Labels follow the real archive's structure (docs/data.md): each scene category
has its own label profile (``SCENE_LABELS``), whose column sums are the
published per-label counts (``REAL_COUNTS``), and the images of a scene are
near-duplicates (one painter group per scene).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raydal.data.synth._tiff import write_tif
from raydal.data.synth.painter import labels_from_group_counts, paint, paint_chunks, sample_grades
from raydal.data.ucmerced import UCMercedReader as Reader
from raydal.exceptions import ConfigError

DEFAULT_N = 2100
DEFAULT_SIZE = 256
#: Images per label in the real 2100-image archive (Chaudhuri et al., TGRS 2018,
#: the multi-label ground truth's published table), in ``Reader.classes`` order.
REAL_COUNTS = (100, 718, 691, 886, 115, 105, 100, 104, 975, 102, 1300, 294, 100, 102, 100, 1009, 203)
#: Of a scene's 100 images, how many carry each label. The scene-exclusive labels
#: (airplane, dock, tanks, sea, ...) sit on their scene as in the real ground
#: truth; the split of the shared labels (pavement, cars, trees, ...) over the
#: scenes is an estimate from what the scenes show. Columns sum to REAL_COUNTS.
SCENE_LABELS: dict[str, dict[str, int]] = {
    "agricultural": {"field": 100, "trees": 15},
    "airplane": {"airplane": 100, "bare-soil": 40, "buildings": 30, "cars": 30, "grass": 60, "pavement": 100},
    "baseballdiamond": {"bare-soil": 90, "buildings": 35, "cars": 30, "court": 3, "field": 4, "grass": 95,
                        "pavement": 60, "sand": 40, "trees": 60},
    "beach": {"sand": 100, "sea": 100, "ship": 2},
    "buildings": {"buildings": 100, "cars": 95, "grass": 20, "pavement": 100, "trees": 40},
    "chaparral": {"bare-soil": 80, "chaparral": 100, "sand": 45},
    "denseresidential": {"bare-soil": 40, "buildings": 100, "cars": 98, "grass": 40, "mobile-home": 2,
                         "pavement": 100, "trees": 90},
    "forest": {"grass": 10, "trees": 100},
    "freeway": {"bare-soil": 35, "cars": 95, "grass": 70, "pavement": 100, "trees": 60},
    "golfcourse": {"grass": 100, "pavement": 10, "sand": 64, "trees": 100, "water": 8},
    "harbor": {"cars": 5, "dock": 100, "pavement": 25, "ship": 100, "water": 100},
    "intersection": {"bare-soil": 30, "buildings": 60, "cars": 98, "grass": 50, "pavement": 100, "trees": 60},
    "mediumresidential": {"bare-soil": 50, "buildings": 100, "cars": 95, "grass": 85, "pavement": 100, "trees": 100},
    "mobilehomepark": {"bare-soil": 60, "buildings": 40, "cars": 90, "grass": 30, "mobile-home": 100,
                       "pavement": 100, "trees": 60},
    "overpass": {"bare-soil": 40, "cars": 95, "grass": 50, "pavement": 100, "trees": 30},
    "parkinglot": {"bare-soil": 15, "buildings": 45, "cars": 100, "grass": 20, "pavement": 100, "trees": 35},
    "river": {"bare-soil": 20, "grass": 50, "sand": 45, "trees": 85, "water": 95},
    "runway": {"bare-soil": 35, "grass": 70, "pavement": 100},
    "sparseresidential": {"bare-soil": 80, "buildings": 100, "cars": 20, "chaparral": 15, "court": 2, "grass": 100,
                          "pavement": 60, "trees": 100},
    "storagetanks": {"bare-soil": 70, "buildings": 45, "cars": 15, "grass": 45, "pavement": 65, "tanks": 100,
                     "trees": 24},
    "tenniscourt": {"bare-soil": 33, "buildings": 36, "cars": 20, "court": 100, "grass": 80, "pavement": 80,
                    "trees": 50},
}  # fmt: skip
#: Odd image sizes (H, W) of the real archive, relative to its nominal 256.
ODD_SHAPES = ((256, 249), (247, 247), (254, 254), (248, 248))


def scene_shares() -> np.ndarray:
    """float [21 scenes, 17 labels]: the share of a scene's images that carry each label."""
    shares = np.zeros((len(Reader.scenes), len(Reader.classes)))
    for s, scene in enumerate(Reader.scenes):
        for label, count in SCENE_LABELS[scene].items():
            shares[s, Reader.classes.index(label)] = count / 100
    return shares


def write_archive(out_dir: Path, n: int | None, size: int | None, rng: np.random.Generator, difficulty: float) -> None:
    """Write a fake archive of ``n`` images of about ``size`` x ``size`` px into ``out_dir``."""
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    max_n = 100 * len(Reader.scenes)
    if not 1 <= n <= max_n:
        raise ConfigError(f"The 'n' parameter of the ucmerced generator must be an int in [1, {max_n}]. Got {n} instead.")
    scenes = np.arange(n) % len(Reader.scenes)
    names = [f"{Reader.scenes[s]}{i // len(Reader.scenes):02d}" for i, s in enumerate(scenes)]
    labels = labels_from_group_counts(scenes, scene_shares(), rng)
    grades = sample_grades(labels, rng, difficulty)
    bands = len(Reader.band_names)
    key = int(rng.integers(1 << 62))

    odd = {int(i): ODD_SHAPES[k] for k, i in enumerate(rng.choice(n, size=min(len(ODD_SHAPES), n // 10), replace=False))}
    images_dir = out_dir / Reader.images_dir
    chunks = paint_chunks(labels, (size, size), bands, rng, difficulty, groups=scenes, grades=grades, group_key=key)
    for start, images in chunks:
        for i, image in enumerate(images, start):
            if i in odd:
                shape = tuple(max(4, round(side * size / 256)) for side in odd[i])
                one = (grades[0][i : i + 1], grades[1][i : i + 1])
                image = paint(labels[i : i + 1], shape, bands, rng, difficulty, scenes[i : i + 1], one, key)[0]
            write_tif(images_dir / Reader.scenes[scenes[i]] / f"{names[i]}.tif", image, photometric="RGB")

    header = "\t".join([Reader.header_first_cell, *Reader.classes])
    rows = ["\t".join([name, *map(str, row)]) for name, row in zip(names, labels)]
    (out_dir / Reader.label_file).write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
