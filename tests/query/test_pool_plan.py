"""Cutting the pool into scoring pieces, actor placement and progress lines (no Ray)."""

from __future__ import annotations

import pytest

from raydal.exceptions import ConfigError
from raydal.query.pool import ScoringProgress, batches_per_piece, plan_pieces, read_piece, spread_over_nodes


def test_pieces_are_the_in_process_batches(tiny_shards):
    from raydal.data.shards import decode_batch, iter_batches, load_manifest, read_ids

    manifest = load_manifest(tiny_shards)
    exclude = set(read_ids(manifest, "pool")[1:50:4].tolist())
    pieces, total = plan_pieces(manifest.split_files("pool"), 7, exclude, batches=2)
    want = [b["id"].tolist() for b in iter_batches(manifest, "pool", 7, exclude=exclude)]
    got = [decode_batch(t, manifest)["id"].tolist() for p in pieces for t in read_piece(p, 7)]
    assert got == want and total == sum(map(len, want))
    assert [p.count for p in pieces[:-1]] == [14] * (len(pieces) - 1) and [p.index for p in pieces] == list(
        range(len(pieces))
    )
    assert any(len(p.files) > 1 for p in pieces)  # a piece spans a shard boundary


def test_plan_rejects_bad_sizes(tiny_shards):
    with pytest.raises(ConfigError, match="'batch_size' parameter of plan_pieces"):
        plan_pieces([], 0, None, 1)


@pytest.mark.parametrize(
    "total, batch, workers, per_file, want",
    [(1000, 10, 1, 500, 25), (1000, 10, 8, 500, 4), (1000, 10, 1, 50, 5), (5, 10, 4, 512, 1)],
)
def test_batches_per_piece(total, batch, workers, per_file, want):
    assert batches_per_piece(total, batch, workers, per_file) == want


def test_spread_over_nodes_round_robin_and_threads():
    placed = spread_over_nodes({"b": 4.0, "a": 4.0, "gpu-only": 0.0, "c": 2.0}, 5)
    assert [nid for nid, _ in placed] == ["a", "b", "c", "a", "b"]
    assert [t for _, t in placed] == [2, 2, 2, 2, 2]
    assert spread_over_nodes({"x": 2.0}, 4) == [("x", 1)] * 4
    with pytest.raises(ConfigError, match="No node"):
        spread_over_nodes({"x": 0.0}, 1)


def test_progress_logs_about_ten_lines_with_rate_and_the_end():
    now = [0.0]
    lines: list[str] = []
    report = ScoringProgress(1000, lines.append, clock=lambda: now[0])
    for _ in range(40):
        now[0] += 0.5
        report.update(25)
    assert len(lines) == 10
    assert lines[-1].startswith("  scored 1,000/1,000 rows (100%), 50 rows/s")
    assert "~18s left" in lines[0]  # 100 rows in 2 s, 900 to go
    silent = ScoringProgress(10, None)
    silent.update(10)
    assert silent.done == 10
