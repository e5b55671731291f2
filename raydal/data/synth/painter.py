"""Paints learnable multi-label images: every label leaves its own mark.

Each class gets a fixed style: a colour (one value per band) and an oriented
texture (stripes or a checkerboard at its own angle and frequency). An image is
a noisy background split into a 3x3 grid of slots; every label of the image
paints its style into a slot of its own, so no label hides another. A model
that detects the colours and textures can therefore recover every label, and
``difficulty`` (0 easy .. 1 hard) blends the styles towards the background,
shrinks the painted regions and adds noise.

Styles depend only on the class count, the band count and a fixed key, so two
archives generated with different seeds share what each label looks like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raydal.exceptions import ConfigError

#: Slots per image side; an image shows at most GRID**2 labels.
GRID = 3
MAX_LABELS = GRID * GRID
_STYLE_KEY = 20240611
_BACKGROUND = 118.0


@dataclass(frozen=True)
class Styles:
    """What each of C classes looks like in B bands."""

    colours: np.ndarray  # float32 [C, B], 0..255
    band_weights: np.ndarray  # float32 [C, B], texture amplitude per band, in [-1, 1]
    angles: np.ndarray  # float32 [C], texture orientation in radians
    cycles: np.ndarray  # float32 [C], texture cycles per image side
    checker: np.ndarray  # bool [C], checkerboard (True) or stripes (False)


def class_styles(num_classes: int, bands: int) -> Styles:
    """Distinct styles for ``num_classes`` classes: colours far apart, varied textures."""
    gen = np.random.default_rng([_STYLE_KEY, num_classes, bands])
    candidates = gen.uniform(30.0, 225.0, size=(4096, bands))
    # Greedy farthest-point choice keeps the class colours well apart.
    chosen = [int(np.argmax(np.abs(candidates - _BACKGROUND).sum(1)))]
    dist = np.linalg.norm(candidates - candidates[chosen[0]], axis=1)
    for _ in range(num_classes - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(candidates - candidates[chosen[-1]], axis=1))
    weights = gen.uniform(0.4, 1.0, size=(num_classes, bands)) * gen.choice([-1.0, 1.0], size=(num_classes, bands))
    return Styles(
        colours=candidates[chosen].astype(np.float32),
        band_weights=weights.astype(np.float32),
        angles=(np.arange(num_classes) * (np.pi / num_classes) * 2.39 % np.pi).astype(np.float32),
        cycles=np.resize(np.array([4.5, 7.0, 10.0], np.float32), num_classes),
        checker=np.arange(num_classes) % 2 == 1,
    )


def sample_labels(n: int, priors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw n multi-hot label rows, uint8 [n, C], class c present with probability ``priors[c]``.

    Every row gets at least one label (drawn in proportion to the priors) and at
    most ``MAX_LABELS``, so rare classes stay rare and every image can show all
    of its labels.
    """
    priors = np.asarray(priors, dtype=np.float64)
    labels = rng.random((n, priors.size)) < priors
    for i in np.flatnonzero(labels.sum(1) > MAX_LABELS):
        keep = rng.choice(np.flatnonzero(labels[i]), MAX_LABELS, replace=False)
        labels[i] = False
        labels[i, keep] = True
    empty = np.flatnonzero(~labels.any(1))
    labels[empty, rng.choice(priors.size, size=empty.size, p=priors / priors.sum())] = True
    return labels.astype(np.uint8)


def paint(
    labels: np.ndarray,
    shape: tuple[int, int],
    bands: int,
    rng: np.random.Generator,
    difficulty: float = 0.3,
) -> np.ndarray:
    """Paint one image per label row.

    labels: uint8 [N, C] multi-hot, at most ``MAX_LABELS`` per row.
    shape: (H, W) in pixels, each at least ``GRID``.
    difficulty: in [0, 1] (``synthesize`` checks it).
    Returns uint8 [N, H, W, bands].
    """
    h, w = shape
    if min(h, w) < GRID:
        raise ConfigError(f"The 'size' parameter must be an int >= {GRID}. Got {h}x{w} instead.")
    labels = np.asarray(labels, dtype=bool)
    n, num_classes = labels.shape
    styles = class_styles(num_classes, bands)
    contrast = 1.0 - 0.6 * difficulty
    colours = _BACKGROUND + (styles.colours - _BACKGROUND) * contrast  # [C, B]
    amplitude = 45.0 * contrast
    cover = 0.95 - 0.35 * difficulty  # share of its slot a label paints

    # Background: a per-image tint plus pixel noise.
    images = rng.standard_normal((n, h, w, bands), dtype=np.float32)
    images *= 6.0 + 34.0 * difficulty
    images += (_BACKGROUND + rng.uniform(-12.0, 12.0, size=(n, 1, 1, bands))).astype(np.float32)

    slot_h, slot_w = h // GRID, w // GRID
    reg_h, reg_w = max(1, round(slot_h * cover)), max(1, round(slot_w * cover))
    slots = np.argsort(rng.random((n, MAX_LABELS)), axis=1)  # a random slot order per image
    phases = rng.uniform(0.0, 2 * np.pi, size=labels.shape)
    jitter = rng.integers(0, 1 << 30, size=(*labels.shape, 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i, c in zip(*np.nonzero(labels)):
        slot = slots[i, labels[i, :c].sum()]
        y0 = (slot // GRID) * slot_h + jitter[i, c, 0] % (slot_h - reg_h + 1)
        x0 = (slot % GRID) * slot_w + jitter[i, c, 1] % (slot_w - reg_w + 1)
        region = (slice(y0, y0 + reg_h), slice(x0, x0 + reg_w))
        texture = _texture(yy[region], xx[region], styles, c, phases[i, c], h, w)
        images[(i, *region)] += colours[c] - _BACKGROUND + amplitude * texture[..., None] * styles.band_weights[c]
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _texture(yy: np.ndarray, xx: np.ndarray, styles: Styles, c: int, phase: float, h: int, w: int) -> np.ndarray:
    """Class c's texture on pixel coordinates yy, xx ([h', w']), values in [-1, 1]."""
    freq = 2 * np.pi * styles.cycles[c]
    u = (xx / w) * np.cos(styles.angles[c]) + (yy / h) * np.sin(styles.angles[c])
    if not styles.checker[c]:
        return np.sin(freq * u + phase)
    v = -(xx / w) * np.sin(styles.angles[c]) + (yy / h) * np.cos(styles.angles[c])
    return np.sign(np.sin(freq * u + phase) * np.sin(freq * v))


def paint_chunks(
    labels: np.ndarray,
    shape: tuple[int, int],
    bands: int,
    rng: np.random.Generator,
    difficulty: float = 0.3,
    max_bytes: int = 1 << 26,
):
    """``paint`` in chunks of rows that keep memory under ~``max_bytes``.

    Yields ``(start, images)`` with images uint8 [n, H, W, bands] for
    ``labels[start:start + n]``.
    """
    per_image = shape[0] * shape[1] * bands * 4
    step = max(1, max_bytes // per_image)
    for start in range(0, len(labels), step):
        yield start, paint(labels[start : start + step], shape, bands, rng, difficulty)
