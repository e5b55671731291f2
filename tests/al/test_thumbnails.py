"""Thumbnails: true colour by band name, one stretch for R, G and B, native resolution."""

import io

import numpy as np
import pytest
from PIL import Image

from raydal.al.thumbnails import MAX_GAIN, OriginalImages, png_bytes, rgb_band_indices, true_colour
from raydal.data.shards import load_manifest


@pytest.mark.parametrize(
    "names, expected",
    [
        (["R", "G", "B"], [0, 1, 2]),
        (["R", "G", "B", "NIR"], [0, 1, 2]),
        (["NIR", "b", "g", "r"], [3, 2, 1]),  # TreeSatAI file order, names in any case
        (["B04", "B03", "B02", "B08", "B05"], [0, 1, 2]),  # BigEarthNet
        (["B01", "B02", "B03", "B04", "B08"], [3, 2, 1]),
        (["band1", "band2", "band3", "band4"], [0, 1, 2]),  # unknown names: the first three
        (["gray"], [0, 0, 0]),
    ],
)
def test_rgb_bands_by_name(names, expected):
    assert rgb_band_indices(names) == expected


def _scene(rng):
    """A 64x64 scene: water (dark, bluish), forest (dark green), fields (bright), roofs (grey)."""
    img = np.zeros((64, 64, 4), np.float32)  # B04(R) B03(G) B02(B) B08(NIR)
    img[:32, :32] = (12, 16, 22, 8)  # water
    img[:32, 32:] = (20, 40, 22, 120)  # forest
    img[32:, :32] = (90, 80, 50, 140)  # fields
    img[32:, 32:] = (120, 118, 115, 110)  # built-up
    img += rng.normal(0, 1.5, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), ["B04", "B03", "B02", "B08"]


def test_one_stretch_keeps_band_ratios_and_scene_readable():
    image, names = _scene(np.random.default_rng(0))
    rgb = true_colour(image, names).astype(float)
    src = image[..., [0, 1, 2]].astype(float)
    # The same a*x + b for the three bands: a least-squares fit over all bands explains every pixel.
    keep = (rgb > 0) & (rgb < 255)
    a, b = np.polyfit(src[keep], rgb[keep], 1)
    assert np.abs(a * src[keep] + b - rgb[keep]).max() <= 1.0
    means = {
        k: rgb[sl].mean(axis=(0, 1))
        for k, sl in {
            "water": np.s_[:32, :32],
            "forest": np.s_[:32, 32:],
            "fields": np.s_[32:, :32],
            "built": np.s_[32:, 32:],
        }.items()
    }
    assert means["water"].mean() < means["forest"].mean() < means["fields"].mean() < means["built"].mean()
    assert means["forest"][1] > means["forest"][0] and means["forest"][1] > means["forest"][2]  # green
    assert means["water"][2] > means["water"][0]  # bluish, not inverted
    assert np.ptp(means["built"]) < 15  # grey roofs stay grey


def test_dark_uniform_water_stays_dark_and_grey():
    rng = np.random.default_rng(1)
    water = np.clip(np.rint(rng.normal((10, 12, 14), 1.0, (48, 48, 3))), 0, 255).astype(np.uint8)
    rgb = true_colour(water, ["R", "G", "B"]).astype(float)
    assert rgb.mean() < 64  # dark
    assert np.ptp(rgb.mean(axis=(0, 1))) < 32  # near-grey: the bands stay close
    assert rgb.std(axis=(0, 1)).max() <= MAX_GAIN * 1.0 * 1.5  # noise not blown up past the gain cap
    # The old per-band stretch made this coloured noise: each band spread over ~0..255.
    per_band = (water - np.percentile(water, 1, axis=(0, 1))) / np.maximum(
        np.percentile(water, 99, axis=(0, 1)) - np.percentile(water, 1, axis=(0, 1)), 1e-6
    )
    assert (np.clip(per_band, 0, 1) * 255).std() > 4 * rgb.std()


def test_bright_uniform_patch_stays_bright():
    cloud = np.full((16, 16, 3), 230, np.uint8)
    cloud[::2] += 2
    assert true_colour(cloud, ["R", "G", "B"]).mean() > 180


def test_png_keeps_native_size_up_to_max_side():
    rgb = np.zeros((120, 100, 3), np.uint8)
    assert Image.open(io.BytesIO(png_bytes(rgb, max_side=512))).size == (100, 120)
    assert Image.open(io.BytesIO(png_bytes(rgb, max_side=60))).size == (50, 60)


def test_originals_read_at_native_size_or_fall_back(tiny_shards, tmp_path):
    manifest = load_manifest(tiny_shards)
    import pyarrow.parquet as pq

    path = pq.read_table(manifest.split_files("pool")[0], columns=["path"])["path"][0].as_py()
    originals = OriginalImages(manifest)
    image = originals.load(path)
    assert image is not None and image.dtype == np.uint8 and image.shape[2] == 3 and not originals.failures
    assert originals.load(str(tmp_path / "moved.tif")) is None and "moved.tif" in originals.failures[-1][0]
    manifest.source_root = str(tmp_path / "gone")
    gone = OriginalImages(manifest)
    assert gone.load(path) is None and "cannot be opened" in gone.failures[0][1]


@pytest.mark.parametrize("dataset, native", [("ucmerced", 48), ("bigearthnet", 60), ("treesatai", 48)])
def test_export_thumbnails_are_native_true_colour_with_paths(tmp_path, dataset, native):
    """Originals packed into 32 px shards: thumbnails have the originals' size, their R, G, B are the
    archive's R, G, B bands under one shared stretch, and every CSV row has its path."""
    import csv

    from labeling_state import make_waiting_state

    from raydal.al.humanloop import export_batch
    from raydal.data import get_reader
    from raydal.data.shards import prepare
    from raydal.data.synth import synthesize

    synthesize(dataset, tmp_path / "archive", n=40, size=native, seed=0)
    manifest = prepare(dataset, tmp_path / "archive", tmp_path / "shards", size=32, seed=0)
    info = make_waiting_state(tmp_path / "shards", tmp_path / "state", n_labeled=2, n_pending=3)
    logged = []
    out = export_batch(info["state_dir"], log=logged.append)
    rows = list(csv.DictReader(open(out / "batch.csv")))
    assert [r["id"] for r in rows] == info["pending"]
    assert len(logged) == 1 and logged[0].startswith("thumbnails show bands ")  # no fallback to shard images
    reader = get_reader(dataset, tmp_path / "archive")
    bands = rgb_band_indices(manifest.band_names)
    for r in rows:
        original = reader.load_image(r["path"])  # the path column names the original
        thumb = np.asarray(Image.open(out / r["thumbnail"]).convert("RGB")).astype(float)
        assert thumb.shape == (native, native, 3)
        src = original[..., bands].astype(float)
        keep = (thumb > 0) & (thumb < 255)
        slopes = [np.polyfit(src[..., c][keep[..., c]], thumb[..., c][keep[..., c]], 1)[0] for c in range(3)]
        assert max(slopes) - min(slopes) < 0.02 * max(slopes), slopes  # one stretch for R, G and B
        a, b = np.polyfit(src[keep], thumb[keep], 1)
        assert np.abs(a * src[keep] + b - thumb[keep]).max() <= 1.0  # those very bands


@pytest.mark.parametrize("dataset", __import__("raydal.data", fromlist=["list_datasets"]).list_datasets())
def test_every_reader_is_rebuilt_from_its_manifest_settings(tmp_path, dataset):
    """Thumbnails rebuild the reader from the manifest: settings() must be the constructor's kwargs."""
    from raydal.data import get_reader
    from raydal.data.synth import synthesize

    synthesize(dataset, tmp_path, n=12, size=36, seed=0)  # 36: BigEarthNet's sizes are multiples of 6
    reader = get_reader(dataset, tmp_path)
    assert get_reader(dataset, tmp_path, **reader.settings()).settings() == reader.settings()


# -- R, G, B, NIR uint16 folders: true colour from the source bands --------------------------------

#: Sentinel-2-like surface reflectance x 10^4 of four covers, (R, G, B, NIR).
_COVERS = {
    "vegetation": (300, 900, 250, 4000),
    "water": (250, 400, 600, 80),
    "soil": (1800, 1500, 1200, 2400),
    "cloud": (6000, 6000, 6000, 6000),
}


def _rgbn_folder(root, order=(0, 1, 2, 3), n=6, size=24):
    """``n`` uint16 GeoTIFFs with no band descriptions, the four covers in quadrants (one cover
    per image a little brighter, so the archive varies); bands in ``order`` of (R, G, B, NIR)."""
    from raydal.data.synth._tiff import write_tif

    rng = np.random.default_rng(0)
    h = size // 2
    for i in range(n):
        img = np.zeros((size, size, 4), np.float64)
        for (rows, cols), cover in zip(
            [(np.s_[:h], np.s_[:h]), (np.s_[:h], np.s_[h:]), (np.s_[h:], np.s_[:h]), (np.s_[h:], np.s_[h:])], _COVERS
        ):
            img[rows, cols] = np.array(_COVERS[cover]) * (1.0 + 0.05 * (i % 3))
        img += rng.normal(0, 20, img.shape)
        write_tif(root / f"scene_{i:02d}.tif", np.clip(np.rint(img[..., list(order)]), 0, 65535).astype(np.uint16))
    (root / "classes.txt").write_text("forest\nwater\n")  # no labels: every image is an unlabeled pool image
    return root / "classes.txt"


def _quadrant_means(rgb):
    h = rgb.shape[0] // 2
    return {
        cover: rgb[rows, cols].reshape(-1, 3).mean(axis=0)
        for cover, (rows, cols) in zip(
            _COVERS, [(np.s_[:h], np.s_[:h]), (np.s_[:h], np.s_[h:]), (np.s_[h:], np.s_[:h]), (np.s_[h:], np.s_[h:])]
        )
    }


def _assert_looks_like_the_scene(rgb):
    m = _quadrant_means(rgb.astype(float))
    veg, water, soil = m["vegetation"], m["water"], m["soil"]
    assert veg[1] > veg[0] + 10 and veg[1] > veg[2] + 10, veg  # green, not red (NIR is not shown)
    assert water[2] > water[0] and water.mean() < soil.mean(), water  # dark and bluish, not cyan-bright
    assert soil[0] > soil[1] > soil[2], soil  # brown: red over green over blue
    assert np.ptp(m["cloud"]) < 8 and m["cloud"].mean() > soil.mean(), m["cloud"]  # white stays neutral


def test_rgbn_uint16_folder_thumbnails_are_true_colour(tmp_path):
    """An R, G, B, NIR uint16 folder with no band names: prepare scales each band by its own
    percentiles, but thumbnails show bands 1-3 from the source pixels under one map, so
    vegetation is green, and a shard image (original gone) gives the same colours."""
    import pyarrow.parquet as pq

    from raydal.al.thumbnails import Thumbnails, shared_stretch
    from raydal.data.shards import prepare, read_split

    classes = _rgbn_folder(tmp_path / "archive")
    manifest = prepare("folder", tmp_path / "archive", tmp_path / "shards", size=24, seed=0, classes=classes)
    assert manifest.band_names == ["B1", "B2", "B3", "B4"] and manifest.scaling["method"] == "percentile"
    thumbs = Thumbnails(manifest)
    assert thumbs.bands == [0, 1, 2] and "bands B1, B2, B3 as R, G, B (the files name no bands" in thumbs.describe()
    rows = read_split(manifest, "pool")
    paths = pq.read_table(manifest.split_files("pool")[0], columns=["id", "path"]).to_pydict()
    path = dict(zip(paths["id"], paths["path"]))[rows["id"][0]]
    native = thumbs.rgb(path, rows["image"][0])
    _assert_looks_like_the_scene(native)
    source = thumbs.originals.load(path, source=True)[..., :3].astype(float)  # one map for R, G, B
    keep = (native > 0) & (native < 255)
    a, b = np.polyfit(source[keep], native[keep].astype(float), 1)
    assert np.abs(a * source[keep] + b - native[keep]).max() <= 1.0
    shard_only = thumbs.rgb("", rows["image"][0])  # the per-band scaling undone from the shard bytes
    assert not any(f[0] == path for f in thumbs.originals.failures)
    _assert_looks_like_the_scene(shard_only)
    assert np.abs(shard_only.astype(float) - native).mean() < 6
    # the thumbnail raydal made before: names B4, B3, B2 read as Sentinel-2's, so NIR shown as red
    before = _quadrant_means(shared_stretch(thumbs.originals.load(path)[..., [3, 2, 1]]).astype(float))
    assert before["vegetation"][0] > before["vegetation"][1] + 50  # red vegetation: what the checks above refuse


def test_rgb_bands_chosen_at_prepare_or_export(tmp_path, capsys):
    """A B, G, R, NIR file: --rgb-bands 3,2,1 at prepare is kept in the manifest; export can
    override it and says which bands it shows and why; a bad choice names the bands."""
    from labeling_state import make_waiting_state

    from raydal.al.humanloop import ExportOptions, export_batch
    from raydal.al.thumbnails import Thumbnails
    from raydal.cli import main as cli
    from raydal.data.shards import prepare
    from raydal.exceptions import ConfigError

    classes = _rgbn_folder(tmp_path / "archive", order=(2, 1, 0, 3))
    with pytest.raises(ConfigError, match=r"'rgb_bands'.*\['B1', 'B2', 'B3', 'B4'\].*Got '3,2,9'"):
        prepare(
            "folder",
            tmp_path / "archive",
            tmp_path / "bad",
            size=24,
            seed=0,
            classes=classes,
            rgb_bands=["3", "2", "9"],
        )
    cli(
        [
            "prepare",
            "folder",
            str(tmp_path / "archive"),
            str(tmp_path / "shards"),
            "--size",
            "24",
            "--classes",
            str(classes),
            "--rgb-bands",
            "3,2,1",
        ]
    )
    manifest = load_manifest(tmp_path / "shards")
    assert manifest.reader_settings["rgb_bands"] == ["3", "2", "1"]
    assert Thumbnails(manifest).bands == [2, 1, 0]
    info = make_waiting_state(tmp_path / "shards", tmp_path / "state", n_labeled=1, n_pending=2)
    logged = []
    out = export_batch(info["state_dir"], log=logged.append)
    assert logged == [
        (
            "thumbnails show bands B3, B2, B1 as R, G, B (chosen with --rgb-bands at prepare); source "
            "pixel values, one linear map and one stretch for the three bands (the per-band scaling of "
            "the shards is not used)"
        )
    ]
    thumb = np.asarray(Image.open(next((out / "thumbs").iterdir())).convert("RGB"))
    _assert_looks_like_the_scene(thumb)
    logged.clear()
    export_batch(info["state_dir"], tmp_path / "nir", ExportOptions(rgb_bands="B4,B2,B1"), log=logged.append)
    assert "bands B4, B2, B1 as R, G, B (chosen with --rgb-bands)" in logged[0]  # false colour, on request
    cli(["export", info["state_dir"], "--out", str(tmp_path / "cli"), "--rgb-bands", "3,2,1"])
    assert "thumbnails show bands B3, B2, B1 as R, G, B (chosen with --rgb-bands)" in capsys.readouterr().out
