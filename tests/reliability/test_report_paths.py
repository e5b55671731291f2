"""A report writes inside its output folder only, whatever strategy names, ids or settings the
state dirs it reads carry."""

from __future__ import annotations

import pytest

from raydal.al.report import build_report
from raydal.al.state import ALState, StateStore

pytestmark = pytest.mark.reliability

HOSTILE = [
    "../../escaped",
    "/tmp/escaped-abs",
    "..",
    "a/../../b",
    "con:",
    "x\x00y",
    "~/escaped",
    "f1_curves.png/../../z",
]


def _files(root):
    return {p for p in root.rglob("*") if p.is_file()}


def test_report_writes_only_inside_its_output_folder(tmp_path):
    runs = tmp_path / "runs"
    dirs = []
    for n, name in enumerate(HOSTILE):
        state = ALState(
            config={"strategy": name, "seed": n, "b": name, "dataset": name}, fingerprint=name, phase="done"
        )
        state.labeled = {name: {"iteration": 0, "by": name}}
        state.history = [
            {
                "iteration": i,
                "n_labeled": 10 + 5 * i,
                "checkpoint": name,
                "selected": [name],
                "test": {"micro_f1": 0.1 * i, "macro_f1": 0.05 * i},
                "val": {"micro_f1": 0.1 * i, "macro_f1": 0.05 * i},
                "seconds": {"train": 1.0, "eval": 1.0, "score": 1.0, "select": 1.0},
            }
            for i in range(3)
        ]
        StateStore(str(runs / f"run{n}")).save(state)
        dirs.append(str(runs / f"run{n}"))
    before = _files(tmp_path)
    out = tmp_path / "deep" / "out"
    build_report(dirs, out, at=[15])
    written = _files(tmp_path) - before
    assert written and all(out in p.resolve().parents for p in written), sorted(map(str, written))
    assert {p.name for p in written} == {"report.md", "report.json", "f1_curves.png"}
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.parent.glob("escaped*"))
