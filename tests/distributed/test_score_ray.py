"""Ray Data pool scoring gives what in-process scoring gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raydal.exceptions import ConfigError

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def setup(tiny_shards, tmp_path_factory):
    """(manifest, model, checkpoint folder): a seeded untrained SmallCNN with a loss head."""
    from raydal.data.shards import load_manifest
    from raydal.models import create_model, save_checkpoint

    manifest = load_manifest(tiny_shards)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands, ll=True).eval()
    ckpt = save_checkpoint(tmp_path_factory.mktemp("score_ckpt") / "ckpt", model)
    return manifest, model, ckpt


def _in_process(manifest, model, strategy, k, exclude, prev=None):
    from raydal.data.shards import iter_batches
    from raydal.query import score_pool

    return score_pool(model, iter_batches(manifest, "pool", 16, exclude=exclude), strategy, k, prev_probs=prev)


def _assert_same(ray_scores, local):
    np.testing.assert_array_equal(ray_scores.ids, local.ids)
    np.testing.assert_allclose(ray_scores.probs, local.probs, rtol=1e-4, atol=1e-6)
    assert ray_scores.uncertainty_name == local.uncertainty_name
    np.testing.assert_array_equal(ray_scores.cand_ids, local.cand_ids)
    np.testing.assert_allclose(ray_scores.cand_uncertainty, local.cand_uncertainty, rtol=1e-4)
    np.testing.assert_allclose(ray_scores.cand_embeddings, local.cand_embeddings, rtol=1e-4, atol=1e-6)


def test_two_actors_match_in_process_scoring_and_selection(ray_local, setup, tiny_shards):
    from raydal.data.shards import read_split
    from raydal.distributed.score import score_pool_ray
    from raydal.query import get_strategy

    manifest, model, ckpt = setup
    labeled = set(read_split(manifest, "pool")["id"][:10].tolist())
    strategy = get_strategy("mge+clustering", backend="torch")
    k = strategy.candidate_count(b=5, m=3)
    got = score_pool_ray(ckpt, tiny_shards, labeled, strategy, k, concurrency=2, batch_size=16)
    want = _in_process(manifest, model, strategy, k, labeled)
    assert len(got.ids) == 50 and not labeled & set(got.ids.tolist())
    assert len(got.cand_ids) == k
    _assert_same(got, want)
    assert strategy.select(5, scores=got, m=3, seed=0) == strategy.select(5, scores=want, m=3, seed=0)


def test_tpd_with_previous_probabilities_through_the_object_store(ray_local, setup, tiny_shards):
    from raydal.distributed.score import score_pool_ray

    manifest, model, ckpt = setup
    first = _in_process(manifest, model, "tpd+clustering", 9, None)  # iteration 1: probabilities only
    prev = (first.ids, np.clip(first.probs[::-1], 0, 1))  # a "previous model" that disagrees
    got = score_pool_ray(ckpt, tiny_shards, None, "tpd+clustering", 9, prev_probs=prev, concurrency=1, batch_size=32)
    _assert_same(got, _in_process(manifest, model, "tpd+clustering", 9, None, prev))


def test_the_actors_score_at_the_given_precision(ray_local, setup, tiny_shards):
    """``amp`` reaches the scoring actors: bf16 there matches bf16 here, not fp32."""
    from raydal.data.shards import iter_batches
    from raydal.distributed.score import score_pool_ray
    from raydal.query import score_pool

    manifest, model, ckpt = setup
    got = score_pool_ray(ckpt, tiny_shards, None, "ll", 5, concurrency=1, batch_size=32, amp="bf16")
    local = {amp: score_pool(model, iter_batches(manifest, "pool", 32), "ll", 5, amp=amp).probs
             for amp in ("bf16", "off")}
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
