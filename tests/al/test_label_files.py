"""Hostile label files are refused with the file named and the fix, the state byte for byte
unchanged; what an export writes stays in its folder whatever ids and class names hold."""

import codecs
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from labeling_state import make_waiting_state, state_files

from raydal.al.humanloop import ExportOptions, export_batch, import_labels, validate_labels
from raydal.al.labelfiles import LabelFile
from raydal.al.state import ALState, StateStore
from raydal.data.shards import SCHEMA, Manifest
from raydal.exceptions import LabelImportError
from raydal.utils import atomic_write_json


@pytest.fixture
def run(tiny_shards, tmp_path):
    return make_waiting_state(tiny_shards, tmp_path / "state")


def _good_csv(run, sep="\n") -> str:
    rows = ["id,labels"] + [f"{sid},{';'.join(run['truth'][sid])}" for sid in run["pending"]]
    return sep.join(rows) + sep


def _refused(run, tmp_path, data: bytes, expected: str, name="labels.csv", **kw) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError) as err:
        import_labels(run["state_dir"], path, **kw)
    assert str(path) in str(err.value) and expected in str(err.value), str(err.value)
    assert state_files(run["state_dir"]) == before  # byte for byte
    return str(err.value)


def _zip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("labels.csv", text)
    return buf.getvalue()


def _tar_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("labels.csv")
        info.size = len(text.encode())
        t.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


# -- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8"),
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
        lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8 BOM", "utf-16-le BOM", "utf-16-be BOM"],
)
def test_accepted_encodings(run, tmp_path, encode):
    path = tmp_path / "labels.csv"
    path.write_bytes(encode(_good_csv(run, sep="\r\n")))
    assert import_labels(run["state_dir"], path)["imported"] == 5
    human = StateStore(run["state_dir"]).load().human_labels
    assert {s: [run["classes"][c] for c in human[s]] for s in run["pending"]} == {
        s: run["truth"][s] for s in run["pending"]
    }


def test_latin1_is_refused_with_line_and_fix(run, tmp_path):
    text = _good_csv(run).replace("id,labels\n", "id,labels\n# forêt\n")
    message = _refused(run, tmp_path, text.encode("latin-1"), "line 2 holds the byte 0xEA")
    assert "save it as UTF-8" in message and "Latin-1" in message


def test_a_bad_byte_far_into_a_big_file_is_located(run, tmp_path):
    filler = "".join(f"# comment {i}\n" for i in range(200_000))  # ~3 MB: several read chunks
    data = ("id,labels\n" + filler).encode() + b"\xff\n"
    _refused(run, tmp_path, data, "line 200002 holds the byte 0xFF")


@pytest.mark.parametrize(
    "data, expected",
    [
        (lambda t: t.encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
        (lambda t: codecs.BOM_UTF32_LE + t.encode("utf-32-le"), "is UTF-32 text"),
    ],
    ids=["utf-16 without BOM", "utf-32"],
)
def test_other_encodings_are_refused(run, tmp_path, data, expected):
    _refused(run, tmp_path, data(_good_csv(run)), expected)


# -- not text, not CSV ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, expected, name",
    [
        (lambda t: _zip_bytes(t), "is a ZIP archive (an .xlsx/.ods workbook is one too)", "labels.csv"),
        (lambda t: _zip_bytes(t), "is a ZIP archive", "labels.xlsx"),
        (lambda t: gzip.compress(t.encode()), "is a gzip archive", "labels.csv.gz"),
        (lambda t: _tar_bytes(t), "is a tar archive", "labels.tar"),
        (lambda t: _png_bytes(), "is a PNG image", "labels.csv"),
        (lambda t: bytes(range(256)) * 8, "holds NUL bytes: it is a binary file", "labels.bin"),
        (lambda t: b"", "is empty", "labels.csv"),
        (lambda t: b" \n\t\n", "is empty", "labels.csv"),
        (lambda t: b'{"tasks": []}', "is a JSON object", "labels.json"),
        (lambda t: b'[{"id": 1, "data": {"raydal_id": "x"}}', "is not valid JSON", "labels.json"),
        (lambda t: b'[{"id": 1}] trailing', "is not valid JSON: text after the closing ']'", "labels.json"),
        (lambda t: b'[{"id": 1} {"id": 2}]', "expected ',' or ']'", "labels.json"),
    ],
    ids=[
        "zip",
        "xlsx",
        "gzip",
        "tar",
        "png",
        "binary",
        "empty",
        "blank",
        "json object",
        "truncated json",
        "json trailing text",
        "json missing comma",
    ],
)
def test_files_that_are_not_label_files(run, tmp_path, make, expected, name):
    message = _refused(run, tmp_path, make(_good_csv(run)), expected, name=name)
    assert "Nothing was imported" in message


@pytest.mark.parametrize(
    "body, expected",
    [
        ('"{sid},trees\n', "not valid CSV at line"),  # a quote never closed
        ('"{sid}"x,trees\n', "not valid CSV at line 2"),  # text after a closing quote
        ('{sid},"tre"es"\n', "not valid CSV at line 2"),
    ],
    ids=["unclosed", "text after quote", "stray quote"],
)
def test_bad_quoting_is_refused(run, tmp_path, body, expected):
    message = _refused(run, tmp_path, ("id,labels\n" + body.format(sid=run["pending"][0])).encode(), expected)
    assert "double any quote" in message


def test_quoted_fields_are_read(run, tmp_path):
    p = run["pending"]
    path = tmp_path / "labels.csv"
    path.write_text(
        f'id,labels,note\n"{p[0]}","trees;sea","said ""hi"", then\nleft"\n'
        f"{p[1]},trees,unquoted\u2028line\x85breaks stay in their field\n",
        encoding="utf-8",
    )
    assert import_labels(run["state_dir"], path)["imported"] == 2
    assert StateStore(run["state_dir"]).load().human_labels[p[0]] == sorted(
        run["classes"].index(c) for c in ("trees", "sea")
    )


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sid", ["../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "%2e%2e%2fetc", "x\x00y", "\ufeffx"]
)
def test_path_like_and_odd_ids_are_unknown_ids(run, tmp_path, sid):
    p0 = run["pending"][0]
    head = f"{p0},{';'.join(run['truth'][p0])}\n" * 300 if "\x00" in sid else ""  # past the binary check
    text = _good_csv(run) + head + f'"{sid}",trees\n'
    _refused(run, tmp_path, text.encode(), f"unknown id {sid!r}")


def test_ids_and_classes_are_stripped_and_case_sensitive(run, tmp_path):
    p, truth = run["pending"], run["truth"]
    path = tmp_path / "labels.csv"
    path.write_text("id,labels\n" + f"  {p[0]}\t, {' ; '.join(truth[p[0]])} \n")
    assert import_labels(run["state_dir"], path)["imported"] == 1
    message = _refused(run, tmp_path, f"id,labels\n{p[1].upper()},trees\n".encode(), f"unknown id {p[1].upper()!r}")
    assert f"ids are case-sensitive: did you mean {p[1]!r}?" in message
    message = _refused(run, tmp_path, f"id,labels\n{p[1]},Trees\n".encode(), "class name(s) ['Trees']")
    assert "class names are case-sensitive: did you mean ['trees']?" in message


# -- size ------------------------------------------------------------------------------------


def test_a_file_over_the_limit_is_refused_before_reading(run, tmp_path):
    data = (_good_csv(run) + "# padding\n" * 20_000).encode()
    message = _refused(run, tmp_path, data, "is larger than the label file limit", max_bytes=50_000)
    assert "--max-bytes" in message


def test_a_big_file_is_streamed(run, tmp_path):
    """Memory stays near a few read chunks whatever the file size (4x the rows, same peak)."""
    peaks = []
    for rows in (30_000, 120_000):
        path = tmp_path / f"big-{rows}.csv"
        with open(path, "w") as f:
            f.write(_good_csv(run))
            for i in range(rows):
                f.write(f"not-an-image-{i:06d}-{'x' * 40},trees\n")
        tracemalloc.start()
        try:
            assert sum(1 for _ in LabelFile(path).records()) == rows + 5
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert path.stat().st_size > 8e6
    assert peaks[1] < 1.2 * peaks[0] and peaks[1] < 16e6, peaks


@pytest.mark.slow
def test_a_200_mb_label_studio_export_is_streamed_with_bounded_memory(run, tmp_path):
    """A whole-project Label Studio JSON export of ~200 MB (inlined thumbnails) imports in bounded memory."""
    path = tmp_path / "project.json"
    blob = "data:image/png;base64," + "A" * 100_000
    with open(path, "w") as f:
        f.write("[")
        for n in range(2000):
            sid = run["pending"][n % 5]
            task = {
                "id": n + 1,
                "data": {"image": blob, "raydal_id": sid},
                "annotations": [
                    {
                        "id": n + 1,
                        "was_cancelled": False,
                        "result": [
                            {
                                "from_name": "labels",
                                "to_name": "image",
                                "type": "choices",
                                "value": {"choices": run["truth"][sid]},
                            }
                        ],
                    }
                ],
            }
            f.write(("," if n else "") + json.dumps(task))
        f.write("]")
    size = path.stat().st_size
    assert size > 200e6
    script = textwrap.dedent(f"""
        import resource, sys
        from raydal.al.humanloop import import_labels
        imported = import_labels({run["state_dir"]!r}, sys.argv[1])["imported"] if sys.argv[1] != "-" else 0
        print(imported, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    before = state_files(run["state_dir"])
    base = subprocess.run([sys.executable, "-c", script, "-"], env=env, capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True, check=True)
    (imported, peak), baseline = map(int, out.stdout.split()), int(base.stdout.split()[1])
    assert imported == 5
    assert peak - baseline < 100e6, (peak, baseline, size)  # the file is twice that
    StateStore(run["state_dir"]).save(ALState.from_state_dict(json.loads(before["state.json"])))
    # Over the limit: refused before reading, the state untouched.
    before = state_files(run["state_dir"])
    with pytest.raises(LabelImportError, match="is larger than the label file limit"):
        import_labels(run["state_dir"], path, max_bytes=100 * 2**20)
    assert state_files(run["state_dir"]) == before


# -- mappings (Learner.teach) ------------------------------------------------------------------


def test_validate_labels_in_memory(run):
    state = StateStore(run["state_dir"]).load()
    p, truth, classes = run["pending"], run["truth"], run["classes"]
    new = validate_labels(
        state, {p[0]: truth[p[0]], f" {p[1]} ": ";".join(truth[p[1]]), run["labeled"][0]: truth[run["labeled"][0]]}
    )
    assert new == {
        p[0]: sorted(classes.index(c) for c in truth[p[0]]),
        p[1]: sorted(classes.index(c) for c in truth[p[1]]),
    }
    with pytest.raises(LabelImportError) as err:
        validate_labels(state, {p[0]: [], p[1]: ["spaceship"], "../x": ["trees"], p[2]: [3]})
    text = str(err.value)
    assert "empty label set" in text and "'spaceship'" in text and "unknown id '../x'" in text
    assert "must be a list of class names" in text


# -- exports stay in their folder --------------------------------------------------------------


HOSTILE_IDS = [
    "../../evil",
    "/etc/passwd",
    "a/b",
    "a_b",
    "..",
    ".",
    "",
    "..\\win",
    "con",
    "name with spaces",
    "名前",
    "x" * 300,
    "line\nbreak",
    'quote"d',
    "<tag>&",
    ".hidden",
]
HOSTILE_CLASSES = ["../up", 'a"b', "<x>&", "/abs", "..", "c\\d"]


def _hostile_run(tmp_path: Path) -> str:
    """A shard set and a state whose pending ids and class names are hostile (originals unreadable)."""
    root = tmp_path / "shards"
    (root / "pool").mkdir(parents=True)
    n, c = len(HOSTILE_IDS), len(HOSTILE_CLASSES)
    images = np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    table = pa.table(
        {
            "id": HOSTILE_IDS,
            "image": [im.tobytes() for im in images],
            "labels": [bytes([1] + [0] * (c - 1))] * n,
            "path": HOSTILE_IDS,
            "labeled": [True] * n,
        },
        schema=SCHEMA,
    )
    pq.write_table(table, root / "pool" / "part-00000.parquet")
    manifest = Manifest(
        root=root,
        dataset="ucmerced",
        classes=HOSTILE_CLASSES,
        band_names=["R", "G", "B"],
        bands=3,
        image_size=8,
        splits={"pool": {"count": n, "files": ["pool/part-00000.parquet"]}},
        label_counts={"pool": {k: 0 for k in HOSTILE_CLASSES}},
        source_root=str(tmp_path / "gone"),
        seed=0,
    )
    atomic_write_json(root / "manifest.json", manifest.to_json())
    state = ALState(
        config={"shards_dir": str(root)},
        fingerprint="x",
        phase="label",
        pending={"iteration": 1, "ids": list(HOSTILE_IDS), "probs": {i: [0.9] * c for i in HOSTILE_IDS}},
    )
    StateStore(str(tmp_path / "state")).save(state)
    return str(tmp_path / "state")


def test_export_writes_only_inside_its_folder(tmp_path):
    state_dir = _hostile_run(tmp_path / "run")
    sandbox = tmp_path / "sandbox"
    out = sandbox / "a" / "export"
    before = {p for p in tmp_path.rglob("*")}
    logged = []
    export_batch(state_dir, str(out), ExportOptions(predictions="preselect"), log=logged.append)
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(p == out or out in p.parents or p in out.parents for p in written)
    thumbs = sorted((out / "thumbs").iterdir())
    assert len(thumbs) == len(HOSTILE_IDS)  # one file per id, none shared
    assert all(not p.name.startswith(".") and p.suffix == ".png" for p in thumbs)
    import csv

    with open(out / "batch.csv", newline="", encoding="utf-8") as f:
        assert [r["id"] for r in csv.DictReader(f)] == HOSTILE_IDS
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert [t["data"]["raydal_id"] for t in tasks] == HOSTILE_IDS
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == HOSTILE_CLASSES
    choices = ET.fromstring((out / "label_studio_config.xml").read_text()).find("Choices")
    assert [c.get("value") for c in choices] == HOSTILE_CLASSES
    assert any("shard images" in line for line in logged)  # originals unreadable: said so, shard images used


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_tiny_read_chunks_parse_the_same(run, tmp_path, monkeypatch, fmt):
    """Every chunk boundary (inside a multi-byte character, a number, a quoted field) is handled."""
    from labeling_state import ls_csv, ls_tasks

    import raydal.al.labelfiles as labelfiles

    p, truth = run["pending"], run["truth"]
    tasks = [{"data": {"image": "data:,é" * 3, "raydal_id": sid}} for sid in p]
    export = ls_tasks(tasks, {sid: truth[sid] for sid in p})
    path = tmp_path / f"export.{fmt}"
    path.write_text(json.dumps(export, indent=2) if fmt == "json" else ls_csv(export), encoding="utf-8")
    monkeypatch.setattr(labelfiles, "CHUNK_BYTES", 7)
    assert import_labels(run["state_dir"], path)["imported"] == 5
    human = StateStore(run["state_dir"]).load().human_labels
    assert {s: [run["classes"][c] for c in human[s]] for s in p} == {s: truth[s] for s in p}


def test_records_carry_annotator_time_and_skips_in_every_format(tmp_path):
    """Each annotation is one record with who and when; a skip is SKIPPED with its reason."""
    from labeling_state import ls_csv, ls_json_min, ls_tasks

    from raydal.al.labelfiles import LABELED, SKIPPED

    tasks = [{"data": {"image": "data:,", "raydal_id": sid}} for sid in ("a", "b", "c")]
    export = ls_tasks(tasks, {"a": [["sea"], ["ship"]], "b": "skip", "c": ["unlabelable"]})
    for n, annotation in enumerate(export[0]["annotations"]):
        annotation.update(
            completed_by={"id": 7 + n, "email": f"u{n}@x.org"} if n else 7, updated_at=f"2026-11-28T1{n}:00:00Z"
        )
    seen = {}
    for fmt, text in (("json", json.dumps(export)), ("min", json.dumps(ls_json_min(export))), ("csv", ls_csv(export))):
        path = tmp_path / f"export-{fmt}.{'csv' if fmt == 'csv' else 'json'}"
        path.write_text(text)
        seen[fmt] = [(r.sid, r.names, r.status, r.annotator, r.when, r.detail) for r in LabelFile(path).records()]
    assert seen["json"][:2] == [
        ("a", ("sea",), LABELED, "7", "2026-11-28T10:00:00Z", ""),
        ("a", ("ship",), LABELED, "u1@x.org", "2026-11-28T11:00:00Z", ""),
    ]
    assert seen["json"][2][:3] + (seen["json"][2][5],) == ("b", (), SKIPPED, "skipped in Label Studio")
    for records in seen.values():  # the 'unlabelable' choice is a skip in every format
        (c,) = [r for r in records if r[0] == "c"]
        assert (c[2], c[5]) == (SKIPPED, "marked unlabelable in Label Studio")
    assert (
        [r[1] for r in seen["min"] if r[0] == "a"]
        == [r[1] for r in seen["csv"] if r[0] == "a"]
        == [("sea",), ("ship",)]
    )
    batch = tmp_path / "batch.csv"
    batch.write_text('id,labels,annotator\nx,"unlabelable: no data, striping",ana\ny,sea;ship,bo\n')
    records = list(LabelFile(batch).records())
    assert [(r.sid, r.status, r.detail, r.annotator) for r in records] == [
        ("x", SKIPPED, "no data, striping", "ana"),
        ("y", LABELED, "", "bo"),
    ]
