"""Fake TreeSatAI archive in the published layout.

Writes ``aerial/60m/<name>.tif`` (or ``aerial_60m/<Genus_species>/<name>.tif``
with ``layout="aerial_60m"``): uint8, 4 bands in torchgeo's (IR, G, B, R)
order, EPSG:25832, 60.8 m footprints (0.2 m pixels at the real 304 px);
``s1/60m`` (6x6 float32 dB VV, VH, VV/VH, nodata -9999, EPSG:32632) and
``s2/60m`` (6x6 uint16, 12 bands) under the same names; the labels JSON with
genus area fractions (kept genera > 0.07, plus some trace genera below it);
and the 90/10 ``train_filenames.lst`` / ``test_filenames.lst``.
File names follow ``Genus_species_ageclass_sampleID_WEFL_NLF.tif`` after the
image's dominant genus.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from raydal.data.synth import register_generator
from raydal.data.synth._tiff import north_up, write_tif
from raydal.data.synth.painter import paint_chunks, sample_grades, sample_labels
from raydal.data.treesatai import TreeSatAIReader as Reader
from raydal.exceptions import ConfigError

DEFAULT_N = 1000
DEFAULT_SIZE = 304
FOOTPRINT_M = 60.8
#: Share of images per genus, a long tail like the real archive's (conifers and
#: beech/oak common; poplar, cherry, lime rare). An estimate: no per-genus table
#: is at hand here (docs/data.md).
PRIORS = (0.04, 0.07, 0.04, 0.10, 0.10, 0.25, 0.07, 0.12, 0.35, 0.30, 0.02, 0.02, 0.08, 0.25, 0.02)
SPECIES = {
    "Abies": ("alba",), "Acer": ("pseudoplatanus",), "Alnus": ("spec.",), "Betula": ("spec.",),
    "Cleared": ("0",), "Fagus": ("sylvatica",), "Fraxinus": ("excelsior",),
    "Larix": ("decidua", "kaempferi"), "Picea": ("abies",), "Pinus": ("sylvestris", "nigra", "strobus"),
    "Populus": ("spec.",), "Prunus": ("spec.",), "Pseudotsuga": ("menziesii",),
    "Quercus": ("petraea", "robur", "rubra"), "Tilia": ("spec.",),
}  # fmt: skip
#: Where traces (genera present below the default threshold) fall: (0.01, 0.06].
TRACE_RANGE = (0.01, 0.06)
MIN_FRACTION = 0.10
#: Dirichlet concentration of the area split among an image's genera: < 1 gives
#: one dominant genus and a long tail of small shares, as in mixed stands.
FRACTION_CONCENTRATION = 0.5
#: Patches per forest stand: neighbouring patches of a stand are near-duplicates.
STAND_SIZE = 8
S2_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
LAYOUTS = ("aerial/60m", "aerial_60m")


@register_generator("treesatai")
def write_archive(
    out_dir: Path,
    n: int | None,
    size: int | None,
    rng: np.random.Generator,
    difficulty: float,
    layout: str = "aerial/60m",
) -> None:
    """Write a fake archive of ``n`` aerial patches of ``size`` x ``size`` px into ``out_dir``."""
    if layout not in LAYOUTS:
        raise ConfigError(
            f"The 'layout' parameter of the treesatai generator must be one of {list(LAYOUTS)}. Got {layout!r} instead."
        )
    n = DEFAULT_N if n is None else n
    size = DEFAULT_SIZE if size is None else size
    classes = Reader.classes
    labels = sample_labels(n, np.array(PRIORS), rng)
    stands = np.arange(n) // STAND_SIZE
    grades = sample_grades(labels, rng, difficulty)
    fractions = _fractions(labels, rng)  # float [n, C]
    dominant = fractions.argmax(1)
    sample_ids = rng.choice(100_000, size=n, replace=False)
    names, folders = [], []
    for i in range(n):
        genus = classes[dominant[i]]
        species = SPECIES[genus][rng.integers(len(SPECIES[genus]))]
        names.append(f"{genus}_{species}_{rng.integers(1, 8)}_{sample_ids[i]}_WEFL_NLF.tif")
        folders.append(f"{genus}_{species}")

    origins = np.stack([rng.uniform(350_000, 850_000, n), rng.uniform(5_300_000, 6_000_000, n)], 1)
    file_order = [Reader.band_names.index(b) for b in Reader.band_orders["torchgeo"]]
    for start, images in paint_chunks(labels, (size, size), 4, rng, difficulty, groups=stands, grades=grades):
        for i, image in enumerate(images, start):
            x0, y0 = origins[i]
            aerial = out_dir / "aerial" / "60m" if layout == "aerial/60m" else out_dir / "aerial_60m" / folders[i]
            write_tif(
                aerial / names[i],
                image[..., file_order],
                crs="EPSG:25832",
                transform=north_up(x0, y0, FOOTPRINT_M / size),
                photometric="MINISBLACK",
            )
            coarse = north_up(x0, y0, 10.0)
            write_tif(out_dir / "s1" / "60m" / names[i], _s1(rng), crs="EPSG:32632", transform=coarse, nodata=-9999.0)
            write_tif(out_dir / "s2" / "60m" / names[i], _s2(image), crs="EPSG:32632", transform=coarse, nodata=0)

    entries = {}
    for i, name in enumerate(names):
        present = np.flatnonzero(fractions[i])
        entries[name] = [[classes[c], round(float(fractions[i, c]), 4)] for c in rng.permutation(present)]
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    (out_dir / Reader.labels_file).write_text(json.dumps(entries, indent=1))
    order = rng.permutation(n)
    n_test = max(1, round(0.1 * n)) if n > 1 else 0
    for split, rows in (("test", order[:n_test]), ("train", order[n_test:])):
        (out_dir / Reader.split_lists[split]).write_text("".join(f"{names[i]}\n" for i in sorted(rows)))


def _fractions(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Area fractions float [n, C] that sum to 1 per row.

    Each label gets > MIN_FRACTION plus a long-tailed share of the rest
    (Dirichlet, FRACTION_CONCENTRATION); a third of the images also hold one trace
    genus (not a label) with a fraction in TRACE_RANGE.
    """
    n, c = labels.shape
    fractions = np.zeros((n, c))
    for i in range(n):
        kept = np.flatnonzero(labels[i])
        absent = np.flatnonzero(labels[i] == 0)
        trace = 0.0
        if absent.size and rng.random() < 1 / 3:
            trace = rng.uniform(*TRACE_RANGE)
            fractions[i, rng.choice(absent)] = trace
        spare = 1.0 - trace - MIN_FRACTION * kept.size
        fractions[i, kept] = MIN_FRACTION + spare * rng.dirichlet(np.full(kept.size, FRACTION_CONCENTRATION))
    return fractions


def _s1(rng: np.random.Generator) -> np.ndarray:
    """A 6x6 Sentinel-1 patch: float32 dB (VV, VH, VV/VH), sometimes one nodata pixel."""
    vv = rng.normal(-10.0, 2.0, (6, 6))
    vh = rng.normal(-17.0, 2.0, (6, 6))
    s1 = np.stack([vv, vh, vv - vh], -1).astype(np.float32)
    if rng.random() < 0.1:
        s1[rng.integers(6), rng.integers(6)] = -9999.0
    return s1


def _s2(aerial: np.ndarray) -> np.ndarray:
    """A 6x6 Sentinel-2 patch (uint16 reflectance x 10000, bands S2_BANDS) from an aerial
    patch uint8 [H, W, (R, G, B, NIR)], so both sensors show the same scene."""
    h, w, _ = aerial.shape
    blocks = aerial[: h // 6 * 6, : w // 6 * 6].reshape(6, h // 6, 6, w // 6, 4).mean((1, 3))
    r, g, b, nir = (blocks[..., k] * 4000 / 255 + 100 for k in range(4))
    bands = {
        "B02": b, "B03": g, "B04": r, "B08": nir, "B05": 0.7 * r + 0.3 * nir, "B06": 0.4 * r + 0.6 * nir,
        "B07": 0.2 * r + 0.8 * nir, "B8A": nir, "B11": 0.6 * nir, "B12": 0.4 * nir, "B01": b, "B09": 0.3 * nir,
    }  # fmt: skip
    return np.stack([bands[name] for name in S2_BANDS], -1).round().astype(np.uint16)
