"""Reading annotators' label files: raydal's batch.csv and Label Studio's exports.

A label file is read as a stream and turned into ``LabelRecord``s, one per row
or task, without checking ids or classes against a run (``raydal.al.humanloop``
does that). What is accepted, so that a bad file is refused before anything
changes, naming the file and the fix:

- **Encoding**: UTF-8, with or without a byte-order mark; UTF-16 with a
  byte-order mark (what "Unicode text" saves). Anything else (Latin-1,
  Windows-1252, UTF-16 without a BOM) is refused with the line of the first
  bad byte: there is no reliable way to tell those apart, and a guess would
  silently change class names.
- **Content**: CSV (comma-separated, RFC 4180 quoting, checked strictly) or a
  JSON list. Archives (ZIP, also .xlsx; gzip, ...), images and other binary
  files are refused by their leading bytes.
- **Size**: at most ``max_bytes`` (``DEFAULT_MAX_BYTES``); the file is read in
  chunks, so memory stays bounded by one row or task (plus one chunk) whatever
  the file's size.
- **Ids** are stripped of surrounding whitespace and compared exactly
  (case-sensitive); a stray BOM or NUL never becomes part of an id unseen.

Formats (detected from the content, not the file name):

- raydal's ``batch.csv``: columns ``id`` and ``labels`` (class names joined by
  ``;``); an empty ``labels`` cell is a row not labeled yet; ``unlabelable`` or
  ``unlabelable: REASON`` an image that cannot be labeled (``SKIP_LABEL``); an
  optional ``annotator`` column names who answered.
- Label Studio **JSON**: a list of tasks ``{"id", "data": {"raydal_id", ...},
  "annotations": [{"was_cancelled", "completed_by", "updated_at", "result":
  [{"from_name": "labels", "value": {"choices": [...]}}]}]}``: one record per
  annotation; a cancelled annotation (the annotator pressed Skip) is ``SKIPPED``.
- Label Studio **JSON_MIN**: one object per annotation, the task's data keys
  at the top (``raydal_id``), ``id`` the task id, ``labels`` a class name (one
  choice) or ``{"choices": [...]}`` (several), absent when not annotated;
  ``annotator``, ``updated_at``. Label Studio leaves cancelled annotations out:
  there, the choice ``unlabelable`` marks a skip.
- Label Studio **CSV**: the JSON_MIN fields as columns (``raydal_id``,
  ``labels``, ``annotation_id``, ``annotator``, ...); several choices are a JSON
  text ``{"choices": [...]}``.

Several records for one id (several annotators, or a whole-project export) are
resolved by ``raydal.al.humanloop`` (``--on-disagreement``).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from raydal.exceptions import LabelImportError
from raydal.utils import is_uri, open_input_file

#: Largest label file read (bytes). A Label Studio export of a whole project
#: carries every task's inlined thumbnail, ~20-200 kB each.
DEFAULT_MAX_BYTES = 1 << 30
#: The Label Studio control that holds the classes (``<Choices name="labels">``).
LS_FROM_NAME = "labels"
#: Bytes read per step.
CHUNK_BYTES = 1 << 20
#: Leading bytes of files that are not text, and what to do instead.
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx/.ods workbook is one too)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls)"),
)
_TEXT_FIX = "Export the labels as CSV (UTF-8) or as Label Studio JSON / JSON_MIN / CSV, and import that file."

#: Record states.
LABELED, UNANNOTATED, SKIPPED, MALFORMED = "labeled", "unannotated", "skipped", "malformed"
#: The answer that marks an image as unlabelable (cloudy, no data): a ``labels`` cell
#: ``unlabelable`` or ``unlabelable: REASON`` in batch.csv, a Label Studio choice ``unlabelable``.
SKIP_LABEL = "unlabelable"


@dataclass(frozen=True)
class LabelRecord:
    """One row of a label file (or one Label Studio task or annotation).

    where: the location for messages (``"batch.csv line 3"``, ``"export.json task 12"``);
    sid: the image id, stripped, or None when the row has none; names: the class
    names given (for ``LABELED``); status: ``LABELED``, ``UNANNOTATED`` (no answer
    yet), ``SKIPPED`` (the annotator skipped it: ``detail`` is the reason) or
    ``MALFORMED`` (``detail`` says why); annotator: who answered, as the file names
    them (Label Studio: a user id or e-mail), None when it does not say; when: the
    answer's time as written (ISO 8601), "" when unknown.
    """

    where: str
    sid: str | None
    names: tuple[str, ...] = ()
    status: str = LABELED
    detail: str = ""
    annotator: str | None = None
    when: str = ""


class LabelFile:
    """A label file being read: ``records()`` yields ``LabelRecord``s; ``sha256`` once read.

    Refuses (``LabelImportError`` naming the file) a file that is missing, too
    large, binary, an archive, not in an accepted encoding, or neither CSV nor a
    JSON list. ``path``: a local file or a storage URI (``s3://bucket/labels.csv``).
    """

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise LabelImportError(f"The 'max_bytes' parameter must be an int >= 1. Got {max_bytes!r} instead.")
        self.path: Path | str = str(path) if is_uri(path) else Path(path)
        self.name = str(path).rstrip("/").rsplit("/", 1)[-1] if is_uri(path) else self.path.name
        self.max_bytes = max_bytes
        self.format = ""
        self._hash = hashlib.sha256()
        self._done = False
        try:
            size, is_dir = _size(self.path)
        except OSError as err:
            raise LabelImportError(f"cannot read label file {self.path}: {err}") from err
        if is_dir:
            raise LabelImportError(f"{self.path} is a folder; pass the label file inside it. {_TEXT_FIX}")
        self._check_size(size)

    @property
    def sha256(self) -> str:
        """The file's digest (complete only once ``records()`` is exhausted)."""
        if not self._done:
            raise RuntimeError("LabelFile.sha256 is known only after records() was read to the end")
        return self._hash.hexdigest()

    def records(self) -> Iterator[LabelRecord]:
        try:
            raw = open_input_file(self.path)
        except OSError as err:
            raise LabelImportError(f"cannot read label file {self.path}: {err}") from err
        with raw:
            text = _Text(raw, self)
            first = text.first_char()
            if first in ("[", "{"):
                self.format = "json"
                yield from _json_records(text, first, self)
            else:
                self.format = "csv"
                yield from _csv_records(text, first, self)
            text.drain()  # so the digest covers the whole file
        self._done = True

    # -- checks --------------------------------------------------------------
    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise LabelImportError(
                f"{self.path} is larger than the label file limit ({_mb(size)} > {_mb(self.max_bytes)}); "
                "nothing was imported. Split it (Label Studio: export only the tasks of the pending batch, "
                "or use JSON_MIN/CSV, which are smaller), or raise the limit (raydal import-labels --max-bytes)."
            )

    def _encoding(self, head: bytes) -> str:
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            raise self.error("is UTF-32 text; save it as UTF-8 (or UTF-16 with a byte-order mark) and import again.")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        for magic, kind in _MAGIC:
            if head.startswith(magic):
                raise self.error(f"is {kind}, not a text label file. {_TEXT_FIX}")
        if len(head) > 262 and head[257:262] == b"ustar":
            raise self.error(f"is a tar archive, not a text label file. {_TEXT_FIX}")
        if b"\x00" in head:
            even, odd = head[0::2].count(0), head[1::2].count(0)
            if max(even, odd) > len(head) // 4:
                raise self.error(
                    "looks like UTF-16 text without a byte-order mark; save it as UTF-8 "
                    "(e.g. `iconv -f UTF-16LE -t UTF-8 in.csv > out.csv`) and import again."
                )
            raise self.error(f"holds NUL bytes: it is a binary file, not a text label file. {_TEXT_FIX}")
        return "utf-8"

    def error(self, message: str, problems: list[tuple[str, str]] | None = None) -> LabelImportError:
        return LabelImportError(f"{self.path} {message} Nothing was imported.", problems)


def _size(path: Path | str) -> tuple[int, bool]:
    """(bytes, is a folder) of a local path or a storage URI; OSError when it is not there."""
    if isinstance(path, Path):
        return path.stat().st_size, path.is_dir()
    import pyarrow.fs as pafs

    from raydal.utils import filesystem

    fs, inner = filesystem(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such object: {path}")
    return (info.size or 0), info.type == pafs.FileType.Directory


class _Text:
    """The decoded text of a label file, read in chunks: hashed, size-capped, lines counted."""

    def __init__(self, raw: BinaryIO, owner: LabelFile):
        self._raw = raw
        self._owner = owner
        self._count = 0
        self.line = 1  # line of the next character handed out
        head = self._read()
        encoding = owner._encoding(head[:4096])
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._pending = self._decode(head, final=not head)

    def _read(self) -> bytes:
        data = self._raw.read(CHUNK_BYTES)
        self._count += len(data)
        self._owner._check_size(self._count)  # the file may have grown since it was opened
        self._owner._hash.update(data)
        return data

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            return self._decoder.decode(data, final=final)
        except UnicodeDecodeError as err:
            line = self.line + self._pending_lines() + err.object[: err.start].count(b"\n")
            bad = err.object[err.start : err.start + 1].hex().upper()
            raise self._owner.error(
                f"is not valid {self._encoding.upper().replace('-SIG', '')} text: line {line} holds the byte "
                f"0x{bad}. It is probably Latin-1 / Windows-1252; save it as UTF-8 (Excel: 'CSV UTF-8'; or "
                "`iconv -f WINDOWS-1252 -t UTF-8 in.csv > out.csv`) and import again."
            ) from err

    def _pending_lines(self) -> int:
        return getattr(self, "_pending", "").count("\n")

    def chunks(self) -> Iterator[str]:
        """Decoded text in chunks of about ``CHUNK_BYTES``."""
        while True:
            if self._pending:
                text, self._pending = self._pending, ""
                self.line += text.count("\n")
                yield text
            data = self._read()
            self._pending = self._decode(data, final=not data)
            if not data and not self._pending:
                return

    def first_char(self) -> str:
        """The first non-whitespace character (kept for ``chunks``); "" for an empty file."""
        while True:
            stripped = self._pending.lstrip()
            if stripped:
                return stripped[0]
            data = self._read()
            more = self._decode(data, final=not data)
            self._pending += more
            if not data and not more:
                return ""

    def lines(self) -> Iterator[str]:
        """Lines ending in ``\n`` (the csv module handles ``\r\n``); other Unicode line
        breaks stay inside their line."""
        rest = ""
        for chunk in self.chunks():
            parts = (rest + chunk).split("\n")
            rest = parts.pop()  # an incomplete last line
            for part in parts:
                yield part + "\n"
        if rest:
            yield rest

    def drain(self) -> None:
        while self._read():
            pass


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


# -- CSV -------------------------------------------------------------------------------


def _csv_records(text: _Text, first: str, owner: LabelFile) -> Iterator[LabelRecord]:
    if not first:
        raise owner.error(f"is empty. {_TEXT_FIX}")
    csv.field_size_limit(owner.max_bytes)  # a Label Studio CSV carries each task's inlined thumbnail
    reader = csv.reader(text.lines(), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as err:
        raise owner.error(f"line 1 is not valid CSV ({err}). {_TEXT_FIX}") from err
    if "raydal_id" in header:
        owner.format = "label-studio-csv"
        id_col, label_col = header.index("raydal_id"), header.index(LS_FROM_NAME) if LS_FROM_NAME in header else None
        row_of = _ls_csv_row
    elif "id" in header and "labels" in header:
        owner.format = "csv"
        id_col, label_col = header.index("id"), header.index("labels")
        row_of = _raydal_csv_row
    else:
        raise owner.error(
            f"is a CSV without the columns 'id' and 'labels' (class names joined by ';') and without "
            f"'raydal_id' (a Label Studio CSV export of a raydal project); its columns are {header[:20]}. "
            "Fill in the batch.csv written by `raydal export`, or export the Label Studio project as CSV."
        )
    col = {
        name: header.index(name)
        for name in ("annotation_id", "annotator", "updated_at", "created_at", "was_cancelled")
        if name in header
    }
    task_col = header.index("id") if owner.format == "label-studio-csv" and "id" in header else None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise owner.error(
                f"is not valid CSV at line {reader.line_num} ({err}): a quote is not closed or a quoted field "
                "is followed by text. Quote fields holding commas, quotes or line breaks with double quotes, "
                'and double any quote inside them ("a ""b"""), then import again.'
            ) from err
        where = f"{owner.name} line {reader.line_num}"
        if task_col is not None and len(row) == len(header):
            where += f" (task {row[task_col].strip()})"
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            yield LabelRecord(
                where, None, status=MALFORMED, detail=f"{len(row)} fields where the header has {len(header)}"
            )
            continue
        cells = {name: row[i].strip() for name, i in col.items()}
        record = row_of(where, row, id_col, label_col, cells)
        if record.status != MALFORMED:
            record = replace(
                record,
                annotator=cells.get("annotator") or None,
                when=cells.get("updated_at") or cells.get("created_at") or "",
            )
        yield record


def _raydal_csv_row(where: str, row: list[str], id_col: int, label_col: int, _cells: dict[str, str]) -> LabelRecord:
    sid = row[id_col].strip()
    cell = row[label_col].strip()
    if cell == SKIP_LABEL:
        return _skip(where, sid, "marked unlabelable in the label file", answered=True)
    if cell.startswith(SKIP_LABEL + ":"):
        return _skip(where, sid, cell[len(SKIP_LABEL) + 1 :].strip() or "marked unlabelable in the label file")
    names = _split_names(cell)
    return LabelRecord(where, sid, names, LABELED if names else UNANNOTATED)


def _ls_csv_row(where: str, row: list[str], id_col: int, label_col: int | None, cells: dict[str, str]) -> LabelRecord:
    sid = row[id_col].strip()
    cell = row[label_col].strip() if label_col is not None else ""
    if cells.get("was_cancelled", "").lower() in ("true", "1"):
        return _skip(where, sid, "skipped in Label Studio")
    if not cell:
        if cells.get("annotation_id"):
            return LabelRecord(where, sid, status=LABELED)  # an annotation with no class: checked later
        return LabelRecord(where, sid, status=UNANNOTATED)
    if cell[0] in "[{":
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return LabelRecord(where, sid, status=MALFORMED, detail=f"the labels cell {cell[:80]!r} is not valid JSON")
        return _ls_min_value(where, sid, value)
    return _ls_min_value(where, sid, cell)


def _skip(where: str, sid: str, reason: str, answered: bool = False) -> LabelRecord:
    """An unlabelable image. answered: the answer was the bare name ``SKIP_LABEL``, kept in
    ``names`` (a project with a class of that name reads it as that class)."""
    return LabelRecord(where, sid, (SKIP_LABEL,) if answered else (), status=SKIPPED, detail=reason)


def _split_names(cell: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in cell.replace(",", ";").split(";") if c.strip())


# -- JSON ------------------------------------------------------------------------------


def _json_records(text: _Text, first: str, owner: LabelFile) -> Iterator[LabelRecord]:
    if first == "{":
        raise owner.error(
            "is a JSON object; a Label Studio export is a JSON list of tasks. Export the project "
            "as JSON, JSON_MIN or CSV and import that file."
        )
    for n, item in enumerate(_iter_json_list(text, owner)):
        if not isinstance(item, dict):
            yield LabelRecord(
                f"{owner.name} item #{n}", None, status=MALFORMED, detail=f"a {type(item).__name__}, not a task object"
            )
            continue
        task = item.get("id")
        where = f"{owner.name} task {task}" if isinstance(task, (int, str)) and str(task) else f"{owner.name} item #{n}"
        if isinstance(item.get("data"), dict):
            owner.format = "label-studio-json"
            yield from _ls_json_task(where, item)
        elif "raydal_id" in item:
            owner.format = "label-studio-json-min"
            yield _ls_min_record(where, item)
        else:
            yield LabelRecord(
                where,
                None,
                status=MALFORMED,
                detail="no raydal_id: not a task of a project made from raydal's label_studio_tasks.json",
            )


def _iter_json_list(text: _Text, owner: LabelFile) -> Iterator[Any]:
    """The items of a JSON list, decoded one at a time (memory: one item plus one chunk)."""
    decoder = json.JSONDecoder()
    chunks = text.chunks()
    buf, pos, eof, base = "", 0, False, 0  # base: characters dropped from the front of buf

    def more(at_least: int = CHUNK_BYTES) -> bool:
        nonlocal buf, pos, eof, base
        if eof:
            return False
        base += pos
        buf, pos, got = buf[pos:], 0, 0
        while got < at_least:  # grow geometrically so a huge item is not re-parsed too often
            chunk = next(chunks, "")
            if not chunk:
                eof = True
                break
            buf += chunk
            got += len(chunk)
        return got > 0

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos].isspace():
                pos += 1
            if pos < len(buf) or not more():
                return

    def fail(what: str) -> LabelImportError:
        return owner.error(f"is not valid JSON: {what} at character {base + pos}. {_TEXT_FIX}")

    skip_ws()
    if buf[pos : pos + 1] != "[":
        raise fail("expected '['")
    pos += 1
    skip_ws()
    if buf[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            skip_ws()
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                    if end < len(buf) or eof:  # an item ending where the buffer ends may go on (a number)
                        break
                except json.JSONDecodeError as err:
                    if eof:
                        raise fail(err.msg) from err
                more(max(CHUNK_BYTES, len(buf)))
            pos = end
            yield item
            skip_ws()
            sep = buf[pos : pos + 1]
            pos += 1
            if sep == "]":
                break
            if sep != ",":
                raise fail(f"expected ',' or ']' after an item, found {sep!r}" if sep else "the list is not closed")
    skip_ws()
    if pos < len(buf):
        raise fail("text after the closing ']'")


def _ls_json_task(where: str, task: dict[str, Any]) -> Iterator[LabelRecord]:
    """A task of Label Studio's JSON export: one record per annotation (or one saying it has none)."""
    sid = task["data"].get("raydal_id")
    if sid is None:
        yield LabelRecord(where, None, status=MALFORMED, detail="data has no raydal_id")
        return
    sid = str(sid).strip()
    annotations = task.get("annotations") or task.get("completions") or []
    if not isinstance(annotations, list):
        yield LabelRecord(where, sid, status=MALFORMED, detail="'annotations' is not a list")
        return
    annotations = [a for a in annotations if isinstance(a, dict)]
    if not annotations:
        yield LabelRecord(where, sid, status=UNANNOTATED)
    for annotation in annotations:
        who = annotation.get("completed_by")
        who = who.get("email", who.get("id")) if isinstance(who, dict) else who
        meta = {
            "annotator": None if who is None else str(who),
            "when": str(annotation.get("updated_at") or annotation.get("created_at") or ""),
        }
        if annotation.get("was_cancelled") or annotation.get("skipped"):
            yield replace(_skip(where, sid, "skipped in Label Studio"), **meta)
            continue
        names: list[str] = []
        for result in annotation.get("result") or []:
            if isinstance(result, dict) and result.get("from_name", LS_FROM_NAME) == LS_FROM_NAME:
                choices = (result.get("value") or {}).get("choices") or []
                names += [str(c) for c in choices] if isinstance(choices, list) else [str(choices)]
        yield replace(_ls_names(where, sid, sorted(set(names))), **meta)


def _ls_min_record(where: str, item: dict[str, Any]) -> LabelRecord:
    """One record of Label Studio's JSON_MIN export (one per annotation, or per unannotated task)."""
    sid = str(item["raydal_id"]).strip()
    meta = {
        "annotator": None if item.get("annotator") is None else str(item["annotator"]),
        "when": str(item.get("updated_at") or item.get("created_at") or ""),
    }
    if item.get("was_cancelled"):
        return replace(_skip(where, sid, "skipped in Label Studio"), **meta)
    if LS_FROM_NAME not in item:
        status = LABELED if item.get("annotation_id") is not None else UNANNOTATED
        return replace(LabelRecord(where, sid, status=status), **meta)
    record = _ls_min_value(where, sid, item[LS_FROM_NAME])
    return record if record.status == MALFORMED else replace(record, **meta)


def _ls_min_value(where: str, sid: str, value: Any) -> LabelRecord:
    """JSON_MIN / CSV ``labels`` value: ``"name"``, ``{"choices": [...]}`` or a list of those."""
    values = value if isinstance(value, list) else [value]
    names: list[str] = []
    for v in values:
        if isinstance(v, str):
            names.append(v)
        elif isinstance(v, dict) and isinstance(v.get("choices"), list):
            names += [str(c) for c in v["choices"]]
        else:
            return LabelRecord(
                where, sid, status=MALFORMED, detail=f"labels value {str(value)[:80]!r} is not a Choices answer"
            )
    return _ls_names(where, sid, [n.strip() for n in names])


def _ls_names(where: str, sid: str, names: list[str]) -> LabelRecord:
    """A Label Studio answer; the choice ``unlabelable`` (alone) marks a skip."""
    if names == [SKIP_LABEL]:
        return _skip(where, sid, "marked unlabelable in Label Studio", answered=True)
    return LabelRecord(where, sid, tuple(names))
