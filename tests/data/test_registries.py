"""One registration pattern: a new dataset is its reader module and its generator module, a new
strategy its module, each with a decorator; no list anywhere to edit."""

import subprocess
import sys
import textwrap

import pytest

from raydal.al.executor import list_executors
from raydal.data import get_reader, list_datasets
from raydal.data.synth import list_generators, synthesize
from raydal.exceptions import ConfigError
from raydal.models import list_models
from raydal.query import get_strategy, list_strategies

READER = """
from raydal.data import register_dataset
from raydal.data.ucmerced import UCMercedReader


@register_dataset
class ToyReader(UCMercedReader):
    name = "toy"
"""

GENERATOR = """
from raydal.data.synth import register_generator
from raydal.data.synth.ucmerced import write_archive


@register_generator("toy")
def write_toy(out_dir, n, size, rng, difficulty):
    write_archive(out_dir, n, size, rng, difficulty)
"""

STRATEGY = """
from raydal.query.base import register_strategy
from raydal.query.random import RandomStrategy


@register_strategy("toy-random")
class ToyRandom(RandomStrategy):
    pass
"""


def test_built_in_entries_are_found():
    assert {"bigearthnet", "folder", "treesatai", "ucmerced"} <= set(list_datasets())
    assert set(list_datasets()) == set(list_generators())  # every dataset has its generator
    assert {"mge", "tpd", "ll", "random"} <= set(list_strategies())
    assert {"smallcnn", "densenet121"} <= set(list_models()) and {"local", "ray"} <= set(list_executors())


def test_a_new_dataset_and_strategy_are_their_modules_alone(tmp_path):
    """The modules lie outside the package (added to its search path, as if dropped into raydal/data,
    raydal/data/synth and raydal/query); nothing of raydal is edited."""
    for folder, text in (("data", READER), ("synth", GENERATOR), ("query", STRATEGY)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "toy.py").write_text(text)
    script = textwrap.dedent(f"""
        import raydal.data, raydal.data.synth, raydal.query
        from raydal.utils import import_submodules
        raydal.data.__path__.append({str(tmp_path / "data")!r})
        raydal.data.synth.__path__.append({str(tmp_path / "synth")!r})
        raydal.query.__path__.append({str(tmp_path / "query")!r})
        import_submodules.cache_clear()  # a fresh interpreter that finds the new files
        import_submodules("raydal.data"); import_submodules("raydal.data.synth")

        from raydal.config import ALConfig
        from raydal.data import list_datasets
        from raydal.data.shards import prepare
        from raydal.data.synth import synthesize
        from raydal.query import get_strategy

        assert "toy" in list_datasets()
        archive = synthesize("toy", {str(tmp_path / "archive")!r}, n=42, size=16)
        manifest = prepare("toy", archive, {str(tmp_path / "shards")!r}, size=16)
        assert manifest.dataset == "toy" and manifest.splits["pool"]["count"] > 0
        cfg = ALConfig(dataset="toy", shards_dir=str(manifest.root), strategy="toy-random", backbone="smallcnn")
        assert get_strategy(cfg.strategy).name == "toy-random"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_public_lookups_keep_working(tmp_path):
    archive = synthesize("ucmerced", tmp_path / "a", n=21, size=16)
    assert get_reader("ucmerced", archive).name == "ucmerced"
    assert get_strategy("mge+clustering").name == "mge+clustering"
    with pytest.raises(ConfigError, match="toy"):
        synthesize("toy", tmp_path / "b")  # not found here: the registry lists the valid names
    with pytest.raises(ConfigError, match="ucmerced"):
        get_reader("toy", archive)
