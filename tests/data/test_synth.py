"""The fake-archive generators: real profiles, the real UC Merced labels, determinism, imbalanced labels."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import rasterio

from raydal.data.synth import synthesize
from raydal.data.synth.painter import MAX_LABELS, paint, sample_labels
from raydal.exceptions import ConfigError


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dataset", ["ucmerced", "treesatai", "bigearthnet"])
def test_same_seed_same_archive(tmp_path, dataset):
    a = _files(synthesize(dataset, tmp_path / "a", n=12, size=12, seed=7))
    b = _files(synthesize(dataset, tmp_path / "b", n=12, size=12, seed=7))
    c = _files(synthesize(dataset, tmp_path / "c", n=12, size=12, seed=8))
    assert a == b
    assert a != c


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize("ucmerced", tmp_path, n=5, size=16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "eurosat"}, "'dataset'"),
        ({"n": 0}, "'n'"),
        ({"size": 4}, "'size'"),
        ({"difficulty": 2.0}, "'difficulty'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"dataset": "ucmerced", "out_dir": tmp_path / "a", "n": 5, "size": 16} | kwargs
    with pytest.raises(ConfigError, match=match):
        synthesize(**args)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_ucmerced_profile(ucm_root):
    path = ucm_root / "UCMerced_LandUse/Images/agricultural/agricultural00.tif"
    with rasterio.open(path) as src:
        assert (src.count, src.dtypes[0], src.crs) == (3, "uint8", None)
    assert len(list(ucm_root.glob("UCMerced_LandUse/Images/*"))) == 21
    assert b"\r\n" in (ucm_root / "LandUse_Multilabeled.txt").read_bytes()


def test_ucmerced_n_is_capped_at_the_real_count(tmp_path):
    with pytest.raises(ConfigError, match="'n'"):
        synthesize("ucmerced", tmp_path, n=2101, size=16)


def test_treesatai_profiles(treesat_root):
    name = sorted(p.name for p in (treesat_root / "aerial/60m").iterdir())[0]
    with rasterio.open(treesat_root / "aerial/60m" / name) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg(), src.width) == (4, "uint8", 25832, 24)
        assert src.transform.a == pytest.approx(60.8 / 24)
    with rasterio.open(treesat_root / "s1/60m" / name) as src:
        assert (src.count, src.dtypes[0], src.nodata, src.crs.to_epsg(), src.shape) == (
            3,
            "float32",
            -9999.0,
            32632,
            (6, 6),
        )
    with rasterio.open(treesat_root / "s2/60m" / name) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg(), src.shape) == (12, "uint16", 32632, (6, 6))
    train = (treesat_root / "train_filenames.lst").read_text().split()
    test = (treesat_root / "test_filenames.lst").read_text().split()
    assert len(test) == 6 and len(train) == 54 and not set(train) & set(test)


def test_bigearthnet_profiles(ben_root):
    folder = next((ben_root / "BigEarthNet-S2").glob("*/*"))
    sizes = {}
    for path in folder.iterdir():
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes[0], src.crs.to_epsg()) == (1, "uint16", 32632)
            sizes[path.stem.rsplit("_", 1)[1]] = (src.width, src.transform.a)
    assert sizes["B02"] == (24, 10.0) and sizes["B8A"] == (12, 20.0) and sizes["B09"] == (4, 60.0)
    assert len(sizes) == 12


def test_bigearthnet_size_must_split_into_60m_pixels(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 6"):
        synthesize("bigearthnet", tmp_path, n=2, size=32)


def test_labels_are_imbalanced_and_never_empty():
    priors = np.array([0.6, 0.3, 0.1, 0.02])
    labels = sample_labels(20000, priors, np.random.default_rng(0))
    freq = labels.mean(0)
    assert labels.sum(1).min() >= 1 and labels.sum(1).max() <= MAX_LABELS
    assert freq[0] > freq[1] > freq[2] > freq[3] > 0
    empty = np.prod(1 - priors)  # rows drawn empty get one label, in proportion to the priors
    np.testing.assert_allclose(freq, priors + empty * priors / priors.sum(), atol=0.02)


def test_each_label_paints_its_own_colour():
    """One image per class, each with that class alone: its marked slot has the class colour."""
    labels = np.eye(6, dtype=np.uint8)
    images = paint(labels, (30, 30), 3, np.random.default_rng(0), difficulty=0.0).astype(float)
    slots = images.reshape(6, 3, 10, 3, 10, 3).mean((2, 4)).reshape(6, 9, 3)  # [image, slot, band]
    background = np.median(slots, axis=1, keepdims=True)
    marked = np.abs(slots - background).sum(-1).argmax(1)
    colours = slots[np.arange(6), marked]
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)[np.triu_indices(6, 1)]
    assert distances.min() > 30.0


# -- the structure of real archives: the real UC Merced labels, near-duplicate groups, graded difficulty ----
PUBLISHED = Path("/work/shared/data/ucmerced/LandUse_Multilabeled.txt")
needs_published = pytest.mark.skipif(
    not PUBLISHED.is_file(), reason=f"the published UC Merced annotation is not at {PUBLISHED} (only on the dev box)"
)


def _label_file(path) -> dict[str, np.ndarray]:
    """A UC Merced label file as {image name: uint8 [17] in UCMercedReader.classes order}, parsed here on its own."""
    from raydal.data.ucmerced import UCMercedReader as R

    header, *rows = [line.split("\t") for line in Path(path).read_text().splitlines()]
    order = [header.index(c) for c in R.classes]
    return {row[0]: np.array([int(row[k]) for k in order], np.uint8) for row in rows}


@needs_published
def test_packaged_label_matrix_is_the_published_file():
    from raydal.data.synth.ucmerced import LABEL_MATRIX

    packaged = resources.files("raydal.data.synth").joinpath(LABEL_MATRIX).read_text()
    assert packaged.splitlines() == PUBLISHED.read_text().splitlines()


@needs_published
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_full_ucmerced_archive_has_the_real_labels(tmp_path):
    """Through the real reader, every generated image carries the labels of the real image of its name."""
    from raydal.data import get_reader

    real = _label_file(PUBLISHED)
    index = get_reader("ucmerced", synthesize("ucmerced", tmp_path / "a", n=2100, size=8, seed=4)).index()
    assert sorted(index.ids) == sorted(real)
    np.testing.assert_array_equal(index.labels, np.stack([real[i] for i in index.ids]))
    # hence the real archive's facts (the annotation's README): counts, labels per image, co-occurrence
    labels = index.labels.astype(int)
    assert labels.sum(0).tolist() == [
        100,
        718,
        691,
        886,
        115,
        105,
        100,
        103,
        975,
        102,
        1300,
        294,
        100,
        102,
        100,
        1009,
        203,
    ]
    assert np.bincount(labels.sum(1)).tolist() == [0, 224, 426, 512, 442, 365, 119, 12]
    truth = np.stack(list(real.values())).astype(int)
    np.testing.assert_array_equal(labels.T @ labels, truth.T @ truth)


def test_small_ucmerced_archives_take_evenly_spaced_real_images(tmp_path):
    """n < 2100: the same n // 21 (or one more) real images of every scene, whatever the seed."""
    from raydal.data.synth.ucmerced import real_labels
    from raydal.data.ucmerced import UCMercedReader as R

    names, matrix = real_labels()
    a = _label_file(synthesize("ucmerced", tmp_path / "a", n=60, size=8, seed=1) / "LandUse_Multilabeled.txt")
    b = _label_file(synthesize("ucmerced", tmp_path / "b", n=60, size=8, seed=2) / "LandUse_Multilabeled.txt")
    assert list(a) == list(b)
    per_scene = {s: sorted(int(n[len(s) :]) for n in a if n.rstrip("0123456789") == s) for s in R.scenes}
    assert all(per_scene[s] == [0, 33, 67] for s in R.scenes[:18])  # 60 = 18 scenes x 3 + 3 scenes x 2
    assert all(per_scene[s] == [0, 50] for s in R.scenes[18:])
    for name, row in a.items():
        np.testing.assert_array_equal(row, matrix[names.index(name)])


def _label_count_correlations(fill_grid: bool) -> dict[str, float]:
    """Spearman correlation of the label count with image statistics over 300 painted UC Merced images."""
    from scipy.stats import spearmanr

    from raydal.data.synth.painter import sample_grades
    from raydal.data.synth.ucmerced import real_labels

    rows = np.random.default_rng(0).choice(2100, size=300, replace=False)
    labels = real_labels()[1][rows]
    rng = np.random.default_rng(1)
    grades = sample_grades(labels, rng, 0.3)
    images = paint(labels, (32, 32), 3, rng, 0.3, rows // 100, grades, 5, fill_grid=fill_grid).astype(float)
    gradient = (np.diff(images, axis=1) ** 2).mean((1, 2, 3)) + (np.diff(images, axis=2) ** 2).mean((1, 2, 3))
    stats = {"brightness": images.mean((1, 2, 3)), "pixel std": images.std((1, 2, 3)), "gradient energy": gradient}
    return {name: spearmanr(labels.sum(1), value).statistic for name, value in stats.items()}


def test_ucmerced_texture_does_not_grow_with_the_label_count():
    """One slot per label makes texture track the label count; sharing the full grid removes most of it."""
    one_slot_each, shared_grid = _label_count_correlations(False), _label_count_correlations(True)
    assert one_slot_each["pixel std"] > 0.6 and one_slot_each["gradient energy"] > 0.6
    assert abs(shared_grid["brightness"]) < 0.2
    assert abs(shared_grid["gradient energy"]) < 0.3
    assert shared_grid["pixel std"] < 0.35  # what is left: more labels, more different colours side by side


def test_fill_grid_gives_every_slot_to_the_nearest_label():
    from raydal.data.synth.painter import _place

    preferred = np.array([4, 4, 0, 8, 2])
    for classes in ([2], [0, 1], [0, 1, 2, 3, 4]):
        pairs = _place(np.array(classes), preferred, fill_grid=True)
        assert sorted(slot for _, slot in pairs) == list(range(MAX_LABELS))  # every slot painted once
        assert {c for c, _ in pairs} == set(classes)
    # opposite corners: each free slot goes to the nearer corner's label, a tie to the lower class
    slots = {c: sorted(s for k, s in _place(np.array([2, 3]), preferred, fill_grid=True) if k == c) for c in (2, 3)}
    assert slots == {2: [0, 1, 2, 3, 4, 6], 3: [5, 7, 8]}
    assert _place(np.array([0, 1]), preferred, fill_grid=False) == [(0, 4), (1, 5)]  # a taken slot: the next one


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_images_of_a_scene_are_near_duplicates(tmp_path):
    """Redundancy: an image's nearest neighbour (pixel distance) is nearly always from its own scene."""
    root = synthesize("ucmerced", tmp_path / "a", n=168, size=24, seed=3)
    pixels, scenes = [], []
    for s, scene in enumerate(sorted(p.name for p in (root / "UCMerced_LandUse/Images").iterdir())):
        for path in sorted((root / "UCMerced_LandUse/Images" / scene).glob("*.tif")):
            with rasterio.open(path) as src:
                if src.shape == (24, 24):  # skip the few odd-sized ones
                    pixels.append(src.read().astype(float).ravel())
                    scenes.append(s)
    x, scenes = np.array(pixels), np.array(scenes)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (scenes[d.argmin(1)] == scenes).mean() > 0.8


def test_a_group_shares_its_background_and_label_places():
    """Two images with the same labels: alike within a group, unlike across groups."""
    labels = np.zeros((4, 6), np.uint8)
    labels[:, [1, 4]] = 1
    images = paint(labels, (30, 30), 3, np.random.default_rng(0), difficulty=0.0, groups=np.array([7, 7, 8, 8]))
    x = images.astype(float).reshape(4, -1)
    within = np.linalg.norm(x[0] - x[1]) + np.linalg.norm(x[2] - x[3])
    across = np.linalg.norm(x[0] - x[2]) + np.linalg.norm(x[1] - x[3])
    assert within < 0.6 * across


def _mark(kind: str, grade: float) -> np.ndarray:
    """What one label adds to the background, graded ``grade`` and made hard as ``kind``: float [H, W, 3]."""
    from raydal.data.synth.painter import HARDNESS_KINDS

    labels = np.zeros((1, 4), np.uint8)
    labels[0, 2] = 1
    grades = (np.array([grade]), np.full((1, 4), HARDNESS_KINDS.index(kind)))
    empty = paint(np.zeros_like(labels), (60, 60), 3, np.random.default_rng(1), 0.0, group_key=9).astype(float)
    marked = paint(labels, (60, 60), 3, np.random.default_rng(1), 0.0, grades=grades, group_key=9).astype(float)
    return (marked - empty)[0]


def test_hard_label_regions_are_small_faint_or_covered():
    easy_area = (np.abs(_mark("small", 0.0)).sum(-1) > 1).sum()
    assert (np.abs(_mark("small", 1.0)).sum(-1) > 1).sum() < 0.3 * easy_area  # small: a fraction of the area
    assert (np.abs(_mark("covered", 1.0)).sum(-1) > 1).sum() < 0.5 * easy_area  # covered: part hidden
    assert (np.abs(_mark("covered", 0.0)).sum(-1) > 1).sum() == easy_area  # grade 0: no change
    easy, faint = _mark("faint", 0.0), _mark("faint", 1.0)
    region = np.abs(easy).sum(-1) > 1
    assert np.abs(faint[region]).mean() < 0.5 * np.abs(easy[region]).mean()  # faint: low contrast


def test_difficulty_grades_are_spread():
    """Most images are plain, a share grows with ``difficulty``; hard kinds are mixed."""
    from raydal.data.synth.painter import HARDNESS_KINDS, sample_grades

    labels = np.ones((4000, 5), np.uint8)
    for difficulty in (0.0, 0.5, 1.0):
        grades, kinds = sample_grades(labels, np.random.default_rng(0), difficulty)
        assert np.mean(grades > 0) == pytest.approx(0.2 + 0.4 * difficulty, abs=0.03)
        assert grades.max() <= 1.0 and grades[grades > 0].min() >= 0.3
        assert set(np.unique(kinds)) == set(range(len(HARDNESS_KINDS)))


def test_treesatai_fractions_have_a_long_tail():
    """One dominant genus per patch and small shares beside it; genus frequencies with a long tail."""
    from raydal.data.synth.treesatai import PRIORS, _fractions

    rng = np.random.default_rng(0)
    labels = sample_labels(3000, np.array(PRIORS), rng)
    fractions = _fractions(labels, rng)
    np.testing.assert_allclose(fractions.sum(1), 1.0)
    multi = np.sort(fractions[labels.sum(1) >= 3], axis=1)[:, ::-1]
    assert np.median(multi[:, 0]) > 2 * np.median(multi[:, 1])
    freq = labels.mean(0)
    assert freq.max() > 10 * freq.min()


# -- the difficulty knobs (painter.Knobs) and the calibrated UC Merced archive ----------------------------------
def test_knobs_of_a_difficulty_are_the_painters_defaults():
    """``Knobs.of(d)`` is what ``difficulty`` alone sets, and passing it changes nothing."""
    import dataclasses

    from raydal.data.synth.painter import Knobs

    assert dataclasses.astuple(Knobs.of(0.0)) == pytest.approx((1.0, 6.0, 0.95, 0.2, 0.0))
    assert dataclasses.astuple(Knobs.of(1.0)) == pytest.approx((0.4, 40.0, 0.6, 0.6, 0.0))
    labels = np.eye(6, dtype=np.uint8)
    plain = paint(labels, (30, 30), 3, np.random.default_rng(0), 0.3, group_key=5)
    knobbed = paint(labels, (30, 30), 3, np.random.default_rng(0), 0.3, group_key=5, knobs=Knobs.of(0.3))
    np.testing.assert_array_equal(plain, knobbed)


def _one_label_mark(**knobs) -> np.ndarray:
    """Class 2 alone on a noiseless background, painted with ``Knobs.of(0)`` changed by ``knobs``: float [H, W, 3]."""
    import dataclasses

    from raydal.data.synth.painter import Knobs

    look = dataclasses.replace(Knobs.of(0.0), noise=0.0, **knobs)
    labels = np.zeros((1, 4), np.uint8)
    labels[0, 2] = 1
    empty = paint(np.zeros_like(labels), (60, 60), 3, np.random.default_rng(1), group_key=9, knobs=look)
    marked = paint(labels, (60, 60), 3, np.random.default_rng(1), group_key=9, knobs=look)
    return marked.astype(float)[0] - empty.astype(float)[0]


def test_contrast_and_cover_knobs_fade_and_shrink_a_label():
    full, faint, small = _one_label_mark(), _one_label_mark(contrast=0.3), _one_label_mark(cover=0.5)
    region = np.abs(full).sum(-1) > 1
    assert np.abs(faint[region]).mean() == pytest.approx(0.3 * np.abs(full[region]).mean(), rel=0.1)
    assert (np.abs(small).sum(-1) > 1).sum() == pytest.approx(0.25 * region.sum(), rel=0.15)


def test_noise_knob_sets_the_pixel_noise():
    from raydal.data.synth.painter import Knobs

    blank = np.zeros((20, 4), np.uint8)
    for noise in (5.0, 30.0):
        look = Knobs(contrast=1.0, noise=noise, cover=0.9, hard_share=0.0)
        images = paint(blank, (40, 40), 3, np.random.default_rng(0), groups=np.zeros(20, int), knobs=look)
        spread = images.astype(float).std(0).mean()  # across images of one group: the noise alone
        assert spread == pytest.approx(noise, rel=0.1)


def test_own_layout_knob_moves_labels_away_from_the_group_layout():
    """With ``own_layout`` 1 images of one group with the same labels no longer paint them in the same
    places; with 0 they do; the draw is seeded."""
    from raydal.data.synth.painter import Knobs

    labels = np.zeros((8, 6), np.uint8)
    labels[:, [1, 4]] = 1
    groups = np.zeros(8, int)

    def images(own: float, seed: int = 0) -> np.ndarray:
        look = Knobs(contrast=1.0, noise=0.0, cover=0.9, hard_share=0.0, own_layout=own)
        return paint(labels, (30, 30), 3, np.random.default_rng(seed), groups=groups, group_key=3, knobs=look)

    def spread(x: np.ndarray) -> float:
        return float(x.astype(float).std(0).mean())

    assert spread(images(0.0)) < 2.0  # background tint jitter only
    assert spread(images(1.0)) > 10.0
    np.testing.assert_array_equal(images(0.5, seed=4), images(0.5, seed=4))


@pytest.mark.parametrize(
    ("options", "match"),
    [({"contrast": 1.5}, "'contrast'"), ({"noise": -1.0}, "'noise'"), ({"brightness": 0.5}, "brightness")],
)
def test_ucmerced_refuses_bad_knobs(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        synthesize("ucmerced", tmp_path / "a", n=21, size=16, **options)


def test_calibrated_ucmerced_archive_is_seeded_and_harder(tmp_path):
    """``CALIBRATED``: the same arguments write the same archive; its label marks are fainter and
    its noise stronger than at the default difficulty."""
    from raydal.data.synth.ucmerced import CALIBRATED

    a = _files(synthesize("ucmerced", tmp_path / "a", n=42, size=24, seed=1, **CALIBRATED))
    b = _files(synthesize("ucmerced", tmp_path / "b", n=42, size=24, seed=1, **CALIBRATED))
    default = synthesize("ucmerced", tmp_path / "c", n=42, size=24, seed=1)
    assert a == b
    assert a != _files(default)
    assert CALIBRATED == {"difficulty": 1.0, "contrast": 0.3}  # docs/data.md "Calibration" quotes these
