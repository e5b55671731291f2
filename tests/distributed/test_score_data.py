"""Pool scoring on Ray Data (``score_workers`` > 0) gives exactly what in-process scoring gives."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
from score_reference import assert_identical, in_process

from raydal.exceptions import ConfigError

pytestmark = pytest.mark.ray


#: The reference, on one thread as the actors (``torch_threads=1``).
_in_process = functools.partial(in_process, threads1=True)


def test_two_actors_give_the_in_process_scores_candidates_and_selection(ray_local, scoring_setup, tiny_shards):
    from raydal.distributed.score_data import score_pool_data
    from raydal.query import get_strategy

    manifest, model, ckpt, labeled = scoring_setup
    strategy = get_strategy("mge+clustering", backend="torch")
    k = strategy.candidate_count(b=4, m=3)
    lines: list[str] = []
    # batch 7: batches straddle shard files (32 rows each) and the labeled holes
    got = score_pool_data(
        ckpt, tiny_shards, labeled, strategy, k, workers=2, batch_size=7, progress=lines.append, torch_threads=1
    )
    want = _in_process(manifest, model, strategy, k, labeled, batch_size=7)
    assert len(got.ids) == manifest.splits["pool"]["count"] - len(labeled) and len(got.cand_ids) == k
    assert not labeled & set(got.ids.tolist())
    assert_identical(got, want)
    assert strategy.select(4, scores=got, m=3, seed=0) == strategy.select(4, scores=want, m=3, seed=0)
    assert any(f"{len(got.ids)}/{len(got.ids)} rows (100%)" in line for line in lines)
    assert "on Ray Data, 2-2 actor(s)" in lines[-1]


def test_gradient_clustering_selects_the_in_process_ids(ray_local, scoring_setup, tiny_shards):
    """``cluster_features=gradient``: the strategy instance reaches the actors, the candidates and their
    probabilities come back bit for bit, so the gradient-space selection is the in-process one."""
    from raydal.distributed.score_data import score_pool_data
    from raydal.query import get_strategy

    manifest, model, ckpt, labeled = scoring_setup
    strategy = get_strategy("mge+clustering", backend="torch", cluster_features="gradient")
    k = strategy.candidate_count(b=5, m=4)
    got = score_pool_data(ckpt, tiny_shards, labeled, strategy, k, workers=2, batch_size=16, torch_threads=1)
    want = _in_process(manifest, model, strategy, k, labeled, batch_size=16)
    assert_identical(got, want)
    np.testing.assert_array_equal(got.candidate_probs(), want.candidate_probs())
    for seed in range(3):
        assert strategy.select(5, scores=got, m=4, seed=seed) == strategy.select(5, scores=want, m=4, seed=seed)


def test_tpd_with_previous_probabilities_and_a_growing_pool(ray_local, scoring_setup, tiny_shards):
    """TPD's previous probabilities reach the actors through the object store; a pool of 1 to 2
    actors (min_workers < workers) gives the same bits as a fixed one."""
    from raydal.distributed.score_data import score_pool_data

    manifest, model, ckpt, labeled = scoring_setup
    first = _in_process(manifest, model, "tpd+clustering", 9, labeled, 16)  # iteration 1: probabilities only
    assert first.uncertainty_name is None and len(first.cand_ids) == 0
    prev = (first.ids, np.clip(first.probs[::-1] + 0.1, 0, 1))  # a "previous model" that disagrees
    got = score_pool_data(
        ckpt, tiny_shards, labeled, "tpd+clustering", 9, prev, workers=2, min_workers=1, batch_size=16, torch_threads=1
    )
    assert_identical(got, _in_process(manifest, model, "tpd+clustering", 9, labeled, 16, prev))


def test_the_actors_score_at_the_given_precision(ray_local, scoring_setup, tiny_shards):
    """``amp`` reaches the actors: bf16 there is bf16 here, bit for bit."""
    from raydal.distributed.score_data import score_pool_data

    manifest, model, ckpt, _ = scoring_setup
    got = score_pool_data(ckpt, manifest, None, "ll", 5, workers=1, batch_size=32, amp="bf16", torch_threads=1)
    want = _in_process(manifest, model, "ll", 5, None, 32, amp="bf16")
    assert_identical(got, want)
    assert not np.array_equal(got.probs, _in_process(manifest, model, "ll", 5, None, 32).probs)  # fp32 differs


def test_the_actor_outside_ray_scores_batches_like_score_pool(scoring_setup):
    """The actor's logic is a plain class: the checkpoint as bytes in, ``BlockScorer`` rows out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydal.distributed.score_data import PoolScoringActor, _checkpoint_bytes

    manifest, model, ckpt, _ = scoring_setup
    actor = PoolScoringActor(_checkpoint_bytes(ckpt), manifest, "mge", 6)
    table = pa.concat_tables(
        [pq.read_table(f, columns=["id", "image", "labels"]) for f in manifest.split_files("pool")]
    )
    batches = [table.slice(start, 16) for start in range(0, table.num_rows, 16)]
    # the numpy batches Ray Data hands over: binary columns as object arrays of bytes
    outs = [actor({c: np.asarray(b[c].to_pylist(), dtype=object) for c in b.column_names}) for b in batches]
    want = _in_process(manifest, model, "mge", 6, None, 16)
    ids = np.concatenate([o["id"] for o in outs])
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], want.ids)
    np.testing.assert_array_equal(np.concatenate([o["probs"] for o in outs])[order], want.probs)
    # embeddings ship only for rows that entered the actor's running top-6, the final candidates among them
    shipped = {i for o in outs for i, c in zip(o["id"], o["candidate"]) if c}
    assert set(want.cand_ids) <= shipped and 6 <= len(shipped) < len(ids)
    width = 4 * want.cand_embeddings.shape[1]
    assert all(len(e) == (width if c else 0) for o in outs for e, c in zip(o["embedding"], o["candidate"]))


def test_parameters_are_validated(tiny_shards):
    from raydal.distributed.score_data import actor_pool_sizes, score_pool_data

    assert actor_pool_sizes(4) == (4, 4) and actor_pool_sizes(4, 1) == (1, 4)
    with pytest.raises(ConfigError, match="'workers' parameter of score_pool_data must be an int >= 1. Got 0"):
        score_pool_data("ckpt", tiny_shards, None, "mge", 5, workers=0)
    with pytest.raises(
        ConfigError, match=r"'min_workers' parameter of score_pool_data must be an int <= workers \(2\)\. Got 3"
    ):
        score_pool_data("ckpt", tiny_shards, None, "mge", 5, workers=2, min_workers=3)
    with pytest.raises(ConfigError, match="'batch_size'"):
        score_pool_data("ckpt", tiny_shards, None, "mge", 5, batch_size=0)
    with pytest.raises(ConfigError, match="'num_gpus'"):
        score_pool_data("ckpt", tiny_shards, None, "mge", 5, num_gpus=-1)
    with pytest.raises(ConfigError, match="'amp' parameter of score_pool_data must be one of"):
        score_pool_data("ckpt", tiny_shards, None, "mge", 5, amp="fp16")


def test_the_driver_side_imports_no_torch(scoring_setup):
    """What the AL driver runs of this path (reading the checkpoint's bytes, planning the pool)
    needs NumPy, pyarrow and Ray only; torch is imported in the actors."""
    _, _, ckpt, _ = scoring_setup
    code = (
        "import sys\n"
        "from raydal.distributed.score_data import _checkpoint_bytes, actor_pool_sizes, score_pool_data\n"
        f"files = _checkpoint_bytes({str(ckpt)!r})\n"
        "assert sorted(files) == ['model.json', 'model.pt'], sorted(files)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_score_workers_settings_are_checked():
    from raydal.config import ALConfig

    assert ALConfig(score_workers=4, score_workers_min=2).score_workers_min == 2
    with pytest.raises(ConfigError, match="'score_workers_min' parameter of ALConfig must be None or an int in"):
        ALConfig(score_workers=2, score_workers_min=3)
    with pytest.raises(ConfigError, match="with score_workers >= 1"):
        ALConfig(score_workers=0, score_workers_min=1)
    with pytest.raises(ConfigError, match="'score_workers' parameter of ALConfig must be an int >= 0"):
        ALConfig(score_workers=-1)
    # where the pool is scored does not change what the run selects
    assert ALConfig(score_workers=8).fingerprint() == ALConfig().fingerprint()
