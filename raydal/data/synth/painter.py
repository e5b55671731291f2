"""Paints learnable multi-label images: every label leaves its own mark.

Each class gets a fixed style: a colour (one value per band) and an oriented
texture (stripes or a checkerboard at its own angle and frequency). An image is
a noisy background split into a 3x3 grid of slots; every label of the image
paints its style into a slot of its own, so no label hides another (with
``fill_grid``, the labels share all nine slots, so an image's textured area,
contrast and texture energy do not grow with its label count). A model
that detects the colours and textures can therefore recover every label, and
``difficulty`` (0 easy .. 1 hard) blends the styles towards the background,
shrinks the painted regions and adds noise.

Two properties of real archives that matter to active learning are painted too
(docs/data.md gives their sources):

- **Redundancy.** Images of one ``group`` (a UCMerced scene category, a
  TreeSatAI forest stand, a BigEarthNet product) share their background (tint
  and a low-frequency pattern), where each label sits, and its texture phase:
  they are near-duplicates that differ in pixel noise and in their label set.
- **Graded difficulty.** ``sample_grades`` gives each image a grade (0 for
  most, up to 1 for a few); each of its label regions is made harder in one of
  three ways, as in real scenes: *small* (a few cars), *faint* (low contrast:
  shadow, haze, similar material) or *covered* (partly hidden: a cloud, a
  tree crown over a road).

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
#: How a hard label region is made hard (``sample_grades`` kinds).
HARDNESS_KINDS = ("small", "faint", "covered")


@dataclass(frozen=True)
class Knobs:
    """The painter's difficulty knobs. ``Knobs.of(difficulty)`` gives the ones that one number in
    [0, 1] sets (what every generator uses unless it says otherwise); a generator may set any knob on
    its own (``dataclasses.replace``), as the UC Merced one does with its calibrated values."""

    contrast: float  # strength of a label's colour and texture against the background, 0..1
    noise: float  # standard deviation of the pixel noise, grey levels
    cover: float  # share of its slot's side a label region fills, 0..1
    hard_share: float  # share of images given a hardness grade (``sample_grades``), 0..1
    own_layout: float = 0.0  # share of images that place their labels on their own, not as their group does

    @classmethod
    def of(cls, difficulty: float) -> "Knobs":
        return cls(
            contrast=1.0 - 0.6 * difficulty,
            noise=6.0 + 34.0 * difficulty,
            cover=0.95 - 0.35 * difficulty,
            hard_share=0.2 + 0.4 * difficulty,
        )

    def check(self) -> None:
        """Raise ConfigError naming the first knob out of its range."""
        ranges = {"contrast": (0.0, 1.0), "noise": (0.0, 255.0), "cover": (0.05, 1.0)}
        ranges |= {"hard_share": (0.0, 1.0), "own_layout": (0.0, 1.0)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(
                    f"The painter knob {name!r} must be a number in [{low}, {high}]. Got {value!r} instead."
                )


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


def sample_grades(
    labels: np.ndarray, rng: np.random.Generator, difficulty: float = 0.3, share: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image difficulty grades and per-region hardness kinds.

    labels: uint8 [N, C]. Returns ``(grades, kinds)``: grades float [N] in
    [0, 1], 0 for most images and up to 1 for a share of them (uniform in
    [0.3, 1]): ``share``, by default 0.2 + 0.4 * ``difficulty`` (``Knobs.hard_share``);
    kinds int [N, C], an index into ``HARDNESS_KINDS`` per label region.
    """
    n, c = np.asarray(labels).shape
    hard = rng.random(n) < (Knobs.of(difficulty).hard_share if share is None else share)
    grades = np.where(hard, rng.uniform(0.3, 1.0, n), 0.0)
    kinds = rng.integers(0, len(HARDNESS_KINDS), size=(n, c))
    return grades, kinds


def paint(
    labels: np.ndarray,
    shape: tuple[int, int],
    bands: int,
    rng: np.random.Generator,
    difficulty: float = 0.3,
    groups: np.ndarray | None = None,
    grades: tuple[np.ndarray, np.ndarray] | None = None,
    group_key: int | None = None,
    fill_grid: bool = False,
    knobs: Knobs | None = None,
) -> np.ndarray:
    """Paint one image per label row.

    labels: uint8 [N, C] multi-hot, at most ``MAX_LABELS`` per row.
    shape: (H, W) in pixels, each at least ``GRID``.
    difficulty: in [0, 1] (``synthesize`` checks it).
    groups: int [N], images of one group are near-duplicates (default: each
        image its own group).
    grades: ``sample_grades`` output for these rows (default: every grade 0).
    group_key: seeds what each group shares, so calls with the same key paint
        a group alike (default: drawn from ``rng``).
    fill_grid: paint every slot of the grid, shared among the image's labels
        (``_place``), so each image has the same textured area whatever its
        label count; by default each label paints one slot.
    knobs: the difficulty knobs (default ``Knobs.of(difficulty)``). With
        ``own_layout`` > 0 that share of the images (drawn from ``rng``) places
        its labels, their texture phases and offsets by a template of its own
        instead of its group's: same background, different layout.
    Returns uint8 [N, H, W, bands].
    """
    h, w = shape
    if min(h, w) < GRID:
        raise ConfigError(f"The 'size' parameter must be an int >= {GRID}. Got {h}x{w} instead.")
    labels = np.asarray(labels, dtype=bool)
    n, num_classes = labels.shape
    groups = np.arange(n) if groups is None else np.asarray(groups)
    grade, kind = grades if grades is not None else (np.zeros(n), np.zeros((n, num_classes), int))
    styles = class_styles(num_classes, bands)
    knobs = Knobs.of(difficulty) if knobs is None else knobs
    contrast = knobs.contrast
    amplitude = 45.0 * contrast
    cover = knobs.cover  # share of its slot a label paints

    # What a group shares: background tint and pattern, where each label sits, texture phase.
    key = int(rng.integers(1 << 62)) if group_key is None else group_key
    ids, member = np.unique(groups, return_inverse=True)
    shared = [_group_template(key, int(gid), num_classes, bands) for gid in ids]

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    images = rng.standard_normal((n, h, w, bands), dtype=np.float32)
    images *= knobs.noise
    images += (_BACKGROUND + rng.uniform(-3.0, 3.0, size=(n, 1, 1, bands))).astype(np.float32)
    for j, t in enumerate(shared):
        wave = np.sin(2 * np.pi * t.freq[0] * yy / h + t.phase[0]) * np.sin(2 * np.pi * t.freq[1] * xx / w + t.phase[1])
        images[member == j] += t.tint + wave[..., None] * t.amplitude

    # Drawn only when asked for, so archives without it stay byte for byte as they were.
    own = {}
    if knobs.own_layout > 0:
        for i in np.flatnonzero(rng.random(n) < knobs.own_layout):
            own[int(i)] = _group_template(int(rng.integers(1 << 62)), int(ids[member[i]]), num_classes, bands)

    slot_h, slot_w = h // GRID, w // GRID
    for i in range(n):
        t = own.get(i, shared[member[i]])
        for c, slot in _place(np.flatnonzero(labels[i]), t.slots, fill_grid):
            how = HARDNESS_KINDS[kind[i, c]]
            extra = float(grade[i])
            size = cover * (1.0 - 0.6 * extra) if how == "small" else cover
            strength = 1.0 - 0.7 * extra if how == "faint" else 1.0
            reg_h, reg_w = max(1, round(slot_h * size)), max(1, round(slot_w * size))
            y0 = (slot // GRID) * slot_h + t.jitter[c, 0] % (slot_h - reg_h + 1)
            x0 = (slot % GRID) * slot_w + t.jitter[c, 1] % (slot_w - reg_w + 1)
            region = (slice(y0, y0 + reg_h), slice(x0, x0 + reg_w))
            texture = _texture(yy[region], xx[region], styles, c, t.label_phases[c], h, w)
            mark = (styles.colours[c] - _BACKGROUND) * contrast + amplitude * texture[..., None] * styles.band_weights[
                c
            ]
            if how == "covered":  # a band of the region stays background (a cloud, a crown over it)
                hidden = round(reg_h * 0.7 * extra)
                mark[:hidden] = 0.0
            images[(i, *region)] += strength * mark
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _place(classes: np.ndarray, preferred: np.ndarray, fill_grid: bool) -> list[tuple[int, int]]:
    """The (class, slot) pairs one image paints.

    classes: int [k], the image's labels. preferred: int [C], each class's slot in
    its group. Each label takes its preferred slot, or the next free one. With
    ``fill_grid`` every slot left free goes to the label whose own slot is
    nearest on the grid (ties: the lower class), so the k labels cover all
    ``MAX_LABELS`` slots, the painted area does not grow with k, and images of
    a group whose label sets differ by one label still look alike.
    """
    taken = np.zeros(MAX_LABELS, dtype=bool)
    pairs = []
    for c in classes:
        slot = int(preferred[c])
        while taken[slot]:
            slot = (slot + 1) % MAX_LABELS
        taken[slot] = True
        pairs.append((int(c), slot))
    if fill_grid and pairs:
        own = np.array([divmod(slot, GRID) for _, slot in pairs])  # [k, 2] grid row, column
        for slot in np.flatnonzero(~taken):
            nearest = int(np.argmin(((own - divmod(int(slot), GRID)) ** 2).sum(1)))
            pairs.append((pairs[nearest][0], int(slot)))
    return pairs


@dataclass(frozen=True)
class _GroupTemplate:
    """What the images of one group share."""

    tint: np.ndarray  # float32 [B], background offset
    amplitude: np.ndarray  # float32 [B], background pattern amplitude
    freq: np.ndarray  # [2] pattern cycles per side (y, x)
    phase: np.ndarray  # [2]
    slots: np.ndarray  # int [C], each class's preferred slot
    label_phases: np.ndarray  # [C] texture phase per class
    jitter: np.ndarray  # int [C, 2], region offset inside its slot


def _group_template(key: int, group: int, num_classes: int, bands: int) -> _GroupTemplate:
    gen = np.random.default_rng([key, group])
    return _GroupTemplate(
        tint=gen.uniform(-12.0, 12.0, bands).astype(np.float32),
        amplitude=gen.uniform(0.0, 10.0, bands).astype(np.float32),
        freq=gen.uniform(0.5, 2.0, 2),
        phase=gen.uniform(0.0, 2 * np.pi, 2),
        slots=np.argsort(gen.random(num_classes)) % MAX_LABELS,
        label_phases=gen.uniform(0.0, 2 * np.pi, num_classes),
        jitter=gen.integers(0, 1 << 30, size=(num_classes, 2)),
    )


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
    groups: np.ndarray | None = None,
    grades: tuple[np.ndarray, np.ndarray] | None = None,
    group_key: int | None = None,
    fill_grid: bool = False,
    knobs: Knobs | None = None,
):
    """``paint`` in chunks of rows that keep memory under ~``max_bytes``.

    Yields ``(start, images)`` with images uint8 [n, H, W, bands] for
    ``labels[start:start + n]``. A group split over chunks stays one group
    (one ``group_key``, drawn from ``rng``, for all chunks).
    """
    n = len(labels)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    grades = grades if grades is not None else (np.zeros(n), np.zeros(np.shape(labels), int))
    key = int(rng.integers(1 << 62)) if group_key is None else group_key
    per_image = shape[0] * shape[1] * bands * 4
    step = max(1, max_bytes // per_image)
    for start in range(0, n, step):
        rows = slice(start, start + step)
        part = (grades[0][rows], grades[1][rows])
        yield start, paint(labels[rows], shape, bands, rng, difficulty, groups[rows], part, key, fill_grid, knobs)
