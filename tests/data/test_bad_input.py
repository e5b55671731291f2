"""Bad archives: one DatasetError naming every culprit, or a quarantine with skip_bad."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydal.data import get_reader
from raydal.data.shards import load_manifest, prepare
from raydal.data.synth._tiff import write_tif
from raydal.exceptions import DatasetError


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _break_ucmerced(root) -> dict[str, str]:
    """Five kinds of damage; returns {location substring: reason substring}."""
    images = root / "UCMerced_LandUse/Images"
    _truncate(images / "beach/beach00.tif")
    write_tif(images / "forest/forest00.tif", np.zeros((24, 24, 4), np.uint8))  # RGBA
    (images / "river/river00.tif").write_bytes(b"this is not a TIFF")
    (images / "runway/runway00.tif").unlink()  # its label row stays
    label_file = root / "LandUse_Multilabeled.txt"
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join(line for line in lines if not line.startswith("harbor00\t")) + "\n")
    return {
        "beach00.tif": "cannot be read",
        "forest00.tif": "has 4 bands, expected 3",
        "river00.tif": "cannot be read",
        "LandUse_Multilabeled.txt:": "label row without image",
        "harbor00.tif": "image without labels",
    }


def _assert_names_each(problems, expected: dict[str, str]) -> None:
    for where, why in expected.items():
        assert any(where in p and why in r for p, r in problems), (where, why, problems)


def test_every_problem_in_one_error_and_nothing_written(copy_archive, ucm_root, tmp_path):
    root = copy_archive(ucm_root)
    expected = _break_ucmerced(root)
    out = tmp_path / "shards"
    with pytest.raises(DatasetError) as info:
        prepare("ucmerced", root, out, size=16)
    assert len(info.value.problems) == len(expected)
    _assert_names_each(info.value.problems, expected)
    message = str(info.value)
    assert "--skip-bad" in message and "re-download" in message and "beach00.tif" in message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive"]  # no partial sibling left


def test_skip_bad_quarantines_and_packs_the_rest(copy_archive, ucm_root, tmp_path):
    root = copy_archive(ucm_root)
    expected = _break_ucmerced(root)
    manifest = prepare("ucmerced", root, tmp_path / "shards", size=16, skip_bad=True)
    with open(tmp_path / "shards/quarantine.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(expected) == manifest.quarantined
    _assert_names_each([(r["path"], r["reason"]) for r in rows], expected)
    # 60 images: 3 unreadable, 1 missing, 1 without labels.
    assert sum(s["count"] for s in manifest.splits.values()) == 55
    assert load_manifest(tmp_path / "shards") == manifest


def test_a_clean_archive_with_skip_bad_has_an_empty_quarantine(ucm_root, tmp_path):
    manifest = prepare("ucmerced", ucm_root, tmp_path / "shards", size=8, skip_bad=True)
    assert (tmp_path / "shards/quarantine.csv").read_text().splitlines() == ["path,reason"]
    assert manifest.quarantined == 0


def test_load_image_names_the_file(copy_archive, ucm_root):
    root = copy_archive(ucm_root)
    path = root / "UCMerced_LandUse/Images/beach/beach00.tif"
    _truncate(path)
    with pytest.raises(DatasetError, match="beach00.tif") as info:
        get_reader("ucmerced", root).load_image(path)
    assert info.value.problems[0][0] == str(path)


def test_ucmerced_unknown_class_in_header(copy_archive, ucm_root):
    root = copy_archive(ucm_root)
    label_file = root / "LandUse_Multilabeled.txt"
    label_file.write_text(label_file.read_text().replace("\tdock\t", "\tdocks\t", 1))
    with pytest.raises(DatasetError, match="LandUse_Multilabeled.txt") as info:
        get_reader("ucmerced", root).index()
    assert "docks" in str(info.value) and "re-download" in str(info.value)


def test_ucmerced_bad_rows(copy_archive, ucm_root):
    root = copy_archive(ucm_root)
    label_file = root / "LandUse_Multilabeled.txt"
    lines = label_file.read_text().splitlines()
    lines[1] = lines[1].rsplit("\t", 1)[0]  # 16 values
    lines[2] = lines[2][: lines[2].index("\t")] + "\t2" * 17  # not 0/1
    name3 = lines[3].split("\t")[0]
    lines[3] = name3 + "\t0" * 17  # no labels
    label_file.write_text("\n".join(lines))
    _, problems = get_reader("ucmerced", root).scan()
    reasons = {where.rsplit(":", 1)[1]: why for where, why in problems if "Multilabeled.txt:" in where}
    assert "16 values" in reasons["2"] and "other than 0/1" in reasons["3"] and "every class 0" in reasons["4"]


def test_treesatai_problems(copy_archive, treesat_root, tmp_path):
    root = copy_archive(treesat_root)
    labels_path = root / "labels/TreeSatBA_v9_60m_multi_labels.json"
    entries = json.loads(labels_path.read_text())
    names = sorted(entries)
    entries[names[0]] = [["Palma", 0.6], ["Picea", 0.4]]  # unknown genus
    del entries[names[1]]  # image without labels
    entries["Picea_abies_3_99999_WEFL_NLF.tif"] = [["Picea", 1.0]]  # label row without image
    labels_path.write_text(json.dumps(entries))
    write_tif(root / "aerial/60m" / names[2], np.zeros((24, 24, 3), np.uint8))  # wrong band count
    with pytest.raises(DatasetError) as info:
        prepare("treesatai", root, tmp_path / "out", size=16)
    _assert_names_each(
        info.value.problems,
        {
            f"{names[0]}": "unknown class ['Palma']",
            names[1]: "image without labels",
            "multi_labels.json:Picea_abies_3_99999_WEFL_NLF.tif": "label row without image",
            names[2]: "has 3 bands, expected 4",
        },
    )
    assert len(info.value.problems) == 4
    assert not (tmp_path / "out").exists()


def test_bigearthnet_problems(copy_archive, ben_root, tmp_path):
    root = copy_archive(ben_root)
    table = pq.read_table(root / "metadata.parquet")
    rows = table.to_pylist()
    rows[0]["labels"] = ["Rainforest"]  # unknown class
    rows.append({**rows[1], "patch_id": rows[1]["patch_id"][:-5] + "99_99"})  # row without image
    lost = rows.pop(2)["patch_id"]  # image without labels
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), root / "metadata.parquet")
    folder = root / "BigEarthNet-S2" / "_".join(rows[3]["patch_id"].split("_")[:-2]) / rows[3]["patch_id"]
    write_tif(folder / f"{rows[3]['patch_id']}_B05.tif", np.zeros((13, 12, 1), np.uint16))  # wrong size
    (folder.parent / rows[4]["patch_id"] / f"{rows[4]['patch_id']}_B11.tif").unlink()  # missing band
    with pytest.raises(DatasetError) as info:
        prepare("bigearthnet", root, tmp_path / "out", size=24)
    _assert_names_each(
        info.value.problems,
        {
            f"({rows[0]['patch_id']})": "unknown class ['Rainforest']",
            "99_99)": "label row without image",
            lost: "image without labels",
            f"{rows[3]['patch_id']}_B05.tif": "is 13x12 px, expected 12x12",
            rows[4]["patch_id"]: "missing band files ['" + rows[4]["patch_id"] + "_B11.tif']",
        },
    )
    assert len(info.value.problems) == 5
    manifest = prepare("bigearthnet", root, tmp_path / "out", size=24, skip_bad=True)
    assert sum(s["count"] for s in manifest.splits.values()) == 40 - 4
