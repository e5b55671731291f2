"""`raydal run ucmerced` without --data-root generates the archive at the calibrated difficulty."""

from __future__ import annotations

import filecmp

from raydal.al.experiment import ensure_shards, generated_archive_dir, generator_knobs
from raydal.data.synth import synthesize
from raydal.data.synth.ucmerced import CALIBRATED


def test_run_without_a_data_root_paints_the_calibrated_ucmerced_archive(tmp_path):
    lines: list[str] = []
    ensure_shards("ucmerced", tmp_path / "shards", None, 16, 34, seed=0, log=lines.append)
    generated = generated_archive_dir(tmp_path / "shards")
    calibrated = synthesize("ucmerced", tmp_path / "calibrated", n=34, size=16, seed=0, **CALIBRATED)
    easy = synthesize("ucmerced", tmp_path / "easy", n=34, size=16, seed=0)
    images = sorted(p.relative_to(calibrated) for p in calibrated.rglob("*.tif"))
    assert images and images == sorted(p.relative_to(generated) for p in generated.rglob("*.tif"))
    same = [filecmp.cmp(calibrated / p, generated / p, shallow=False) for p in images]
    assert all(same)  # byte for byte the calibrated archive ...
    assert not all(filecmp.cmp(easy / p, generated / p, shallow=False) for p in images)  # ... not the default one
    assert any("paper's difficulty" in line for line in lines)


def test_other_datasets_keep_the_generators_defaults():
    assert generator_knobs("ucmerced") == CALIBRATED
    assert generator_knobs("treesatai") == generator_knobs("bigearthnet") == {}
