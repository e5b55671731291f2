"""Ray Data pool scoring gives what in-process scoring gives."""

from __future__ import annotations

import numpy as np
import pytest
from score_reference import assert_identical, in_process

from raydal.exceptions import ConfigError

pytestmark = pytest.mark.ray


def test_two_actors_match_in_process_scoring_and_selection(ray_local, scoring_setup, tiny_shards):
    from raydal.data.shards import read_split
    from raydal.distributed.score import score_pool_ray
    from raydal.query import get_strategy

    manifest, model, ckpt, _ = scoring_setup
    labeled = set(read_split(manifest, "pool")["id"][:10].tolist())
    strategy = get_strategy("mge+clustering", backend="torch")
    k = strategy.candidate_count(b=5, m=3)
    got = score_pool_ray(ckpt, tiny_shards, labeled, strategy, k, concurrency=2, batch_size=16)
    want = in_process(manifest, model, strategy, k, labeled)
    assert len(got.ids) == 50 and not labeled & set(got.ids.tolist())
    assert len(got.cand_ids) == k
    assert_identical(got, want)
    assert strategy.select(5, scores=got, m=3, seed=0) == strategy.select(5, scores=want, m=3, seed=0)


def test_tpd_with_previous_probabilities_through_the_object_store(ray_local, scoring_setup, tiny_shards):
    from raydal.distributed.score import score_pool_ray

    manifest, model, ckpt, _ = scoring_setup
    first = in_process(manifest, model, "tpd+clustering", 9, None, batch_size=32)  # iteration 1: probabilities only
    prev = (first.ids, np.clip(first.probs[::-1], 0, 1))  # a "previous model" that disagrees
    got = score_pool_ray(ckpt, tiny_shards, None, "tpd+clustering", 9, prev_probs=prev, concurrency=1, batch_size=32)
    assert_identical(got, in_process(manifest, model, "tpd+clustering", 9, None, batch_size=32, prev=prev))


def test_warm_actors_are_reused_and_load_each_new_checkpoint(ray_local, scoring_setup, tiny_shards, tmp_path):
    from raydal.distributed import score
    from raydal.models import create_model, save_checkpoint

    manifest, model, ckpt, _ = scoring_setup
    lines: list[str] = []
    first = score.score_pool_ray(ckpt, tiny_shards, None, "ll", 6, concurrency=1, batch_size=16, progress=lines.append)
    actors = list(score._WARM.actors)
    other = create_model(
        "smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands, ll=True, seed=7
    ).eval()
    second = score.score_pool_ray(
        save_checkpoint(tmp_path / "next", other), tiny_shards, None, "ll", 6, concurrency=1, batch_size=16
    )
    assert score._WARM.actors == actors  # no new actor for the next iteration
    assert_identical(first, in_process(manifest, model, "ll", 6, None))
    assert_identical(second, in_process(manifest, other, "ll", 6, None))
    assert not np.array_equal(first.probs, second.probs)
    assert lines[-2].startswith(f"  scored {len(first.ids)}/{len(first.ids)} rows (100%)")
    assert "1 actor(s) on 1 node(s)" in lines[-1]
    score.release_scoring_actors()
    assert score._WARM.actors == []


def test_the_actors_score_at_the_given_precision(ray_local, scoring_setup, tiny_shards):
    """``amp`` reaches the scoring actors: bf16 there matches bf16 here, not fp32."""
    from raydal.data.shards import iter_batches
    from raydal.distributed.score import score_pool_ray
    from raydal.query import score_pool

    manifest, model, ckpt, _ = scoring_setup
    got = score_pool_ray(ckpt, tiny_shards, None, "ll", 5, concurrency=1, batch_size=32, amp="bf16")
    local = {
        amp: score_pool(model, iter_batches(manifest, "pool", 32), "ll", 5, amp=amp).probs for amp in ("bf16", "off")
    }
    to_bf16 = np.abs(got.probs - local["bf16"]).mean()
    to_fp32 = np.abs(got.probs - local["off"]).mean()
    assert to_bf16 < to_fp32 / 10, (to_bf16, to_fp32)


def test_parameters_are_validated():
    from raydal.distributed.score import score_pool_ray

    with pytest.raises(ConfigError, match="'concurrency' parameter of score_pool_ray must be an int >= 1"):
        score_pool_ray("ckpt", "shards", None, "mge", 5, concurrency=0)
    with pytest.raises(ConfigError, match="'num_gpus'"):
        score_pool_ray("ckpt", "shards", None, "mge", 5, num_gpus=-1)
    with pytest.raises(ConfigError, match="'amp' parameter of score_pool_ray must be one of"):
        score_pool_ray("ckpt", "shards", None, "mge", 5, amp="fp16")
    with pytest.raises(ConfigError, match="'num_cpus'"):
        score_pool_ray("ckpt", "shards", None, "mge", 5, num_cpus="1")


def test_scoring_worker_outside_ray_scores_pieces_like_score_pool(scoring_setup, tiny_shards):
    """The actor's logic is a plain class: pieces of the plan, scored one by one, give score_pool's rows."""
    from raydal.distributed.score import ScoringWorker
    from raydal.query import get_strategy
    from raydal.query.pool import plan_pieces

    manifest, model, ckpt, _ = scoring_setup
    strategy = get_strategy("mge")
    pieces, total = plan_pieces(manifest.split_files("pool"), 16, None, batches=2)
    worker = ScoringWorker("cpu", 1)
    job = dict(
        key="j1",
        checkpoint_dir=str(ckpt),
        manifest_dir=str(tiny_shards),
        strategy=strategy,
        k=5,
        prev_probs=None,
        batch_size=16,
        amp="auto",
    )
    outs = [worker.score(job, piece) for piece in pieces]
    model_before = worker._model
    worker.score(dict(job, key="j2"), pieces[0])  # the next job, same checkpoint: the model is kept
    assert worker._model is model_before
    want = in_process(manifest, model, strategy, 5, None)
    got_ids = np.concatenate([o["id"] for o in outs])
    order = np.argsort(got_ids)
    np.testing.assert_array_equal(got_ids[order], want.ids)
    np.testing.assert_array_equal(np.concatenate([o["probs"] for o in outs])[order], want.probs)
    assert sum(len(o["id"]) for o in outs) == total
