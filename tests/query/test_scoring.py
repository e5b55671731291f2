"""score_batch, TopKCandidates, PrevProbs and score_pool on the tiny shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raydal.data.shards import iter_batches, read_split
from raydal.exceptions import ConfigError, QueryError
from raydal.query import (
    PoolScores,
    PrevProbs,
    TopKCandidates,
    mge_uncertainty,
    score_batch,
    score_pool,
)
from raydal.query.ranking import rank_desc


def test_score_batch_shapes_and_mode(model, manifest):
    pool = read_split(manifest, "pool")
    model.train()
    out = score_batch(model, pool["image"][:5], "cpu")
    assert model.training  # the caller's mode is restored
    model.eval()
    assert out["probs"].shape == (5, manifest.num_classes) and out["probs"].dtype == np.float32
    assert ((out["probs"] >= 0) & (out["probs"] <= 1)).all()
    assert out["embeddings"].ndim == 2 and out["embeddings"].shape[0] == 5
    assert out["pred_loss"].shape == (5,)
    # Matches a manual eval-mode forward.
    from raydal.models import preprocess

    with torch.no_grad():
        ref = model(preprocess(pool["image"][:5]))
    np.testing.assert_allclose(out["probs"], torch.sigmoid(ref.logits).numpy(), rtol=1e-5, atol=1e-6)


def test_topk_matches_a_global_sort_whatever_the_block_order():
    r = np.random.default_rng(0)
    n, d, k = 500, 4, 37
    ids = np.array([f"id{i:04d}" for i in range(n)])
    unc = r.integers(0, 50, size=n).astype(float)  # many ties: the id breaks them
    emb = r.normal(size=(n, d)).astype(np.float32)
    want = rank_desc(unc, ids)[:k]
    for trial in range(3):
        perm = r.permutation(n)
        top = TopKCandidates(k)
        for s in range(0, n, 23):
            blk = perm[s : s + 23]
            top.add(ids[blk], unc[blk], emb[blk])
            assert top._rows <= 2 * k + 23  # memory bound
        got_ids, got_unc, got_emb = top.result()
        np.testing.assert_array_equal(got_ids, ids[want])
        np.testing.assert_array_equal(got_unc, unc[want])
        np.testing.assert_array_equal(got_emb, emb[want])


def test_topk_admits_keeps_every_row_of_the_final_topk():
    r = np.random.default_rng(1)
    ids = np.array([f"{i:03d}" for i in range(300)])
    unc = r.random(300)
    seen = TopKCandidates(20)
    admitted = []
    for s in range(0, 300, 10):
        mask = seen.admits(ids[s : s + 10], unc[s : s + 10])
        admitted += ids[s : s + 10][mask].tolist()
        seen.add(ids[s : s + 10], unc[s : s + 10])
    final = set(ids[rank_desc(unc, ids)[:20]].tolist())
    assert final <= set(admitted)
    assert len(admitted) < 150  # it does filter


def test_topk_rejects_nan_with_the_id():
    top = TopKCandidates(3)
    with pytest.raises(QueryError, match="id 'b'"):
        top.add(np.array(["a", "b"]), np.array([0.1, np.nan]))


def test_prev_probs_forms_and_missing_ids():
    ids = np.array(["a", "b"])
    probs = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    for prev in (PrevProbs((ids, probs)), PrevProbs({"a": probs[0], "b": probs[1]})):
        np.testing.assert_array_equal(prev.lookup(np.array(["b", "a"])), probs[::-1])
    with pytest.raises(QueryError, match="no probabilities for 1 pool id.*'zz'"):
        PrevProbs((ids, probs)).lookup(np.array(["a", "zz"]))


def _full_reference(model, manifest, exclude=()):
    """Per-sample MGE over the whole pool from one big forward pass."""
    pool = read_split(manifest, "pool")
    keep = ~np.isin(pool["id"], list(exclude))
    out = score_batch(model, pool["image"][keep])
    return pool["id"][keep], out, mge_uncertainty(out["probs"], out["embeddings"])


def test_score_pool_keeps_the_true_topk_with_their_embeddings(model, manifest):
    ids, out, unc = _full_reference(model, manifest)
    k = 12
    scores = score_pool(model, iter_batches(manifest, "pool", 7), "mge+clustering", k)
    assert isinstance(scores, PoolScores)
    assert scores.uncertainty_name == "mge"
    np.testing.assert_array_equal(scores.ids, np.sort(ids))
    order = np.argsort(ids)
    np.testing.assert_allclose(scores.probs, out["probs"][order], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scores.uncertainty, unc[order], rtol=1e-4)
    want = rank_desc(unc, ids)[:k]
    np.testing.assert_array_equal(scores.cand_ids, ids[want])
    np.testing.assert_allclose(scores.cand_uncertainty, unc[want], rtol=1e-4)
    np.testing.assert_allclose(scores.cand_embeddings, out["embeddings"][want], rtol=1e-4, atol=1e-6)


def test_score_pool_respects_exclusion_and_batch_size(model, manifest):
    labeled = set(read_split(manifest, "pool")["id"][:10].tolist())
    a = score_pool(model, iter_batches(manifest, "pool", 5, exclude=labeled), "ll", 8)
    b = score_pool(model, iter_batches(manifest, "pool", 64, exclude=labeled), "ll", 8)
    assert not labeled & set(a.ids.tolist())
    assert len(a.ids) == 50
    np.testing.assert_array_equal(a.cand_ids, b.cand_ids)
    np.testing.assert_allclose(a.cand_uncertainty, b.cand_uncertainty, rtol=1e-4)


def test_tpd_without_previous_keeps_probs_but_no_candidates(model, manifest):
    first = score_pool(model, iter_batches(manifest, "pool", 16), "tpd+clustering", 10)
    assert first.uncertainty_name is None and len(first.cand_ids) == 0
    assert first.probs.shape == (60, manifest.num_classes)
    shifted = (first.ids, np.clip(first.probs + np.linspace(0, 0.3, 60)[:, None], 0, 1))
    second = score_pool(model, iter_batches(manifest, "pool", 16), "tpd+clustering", 10, prev_probs=shifted)
    assert second.uncertainty_name == "tpd"
    np.testing.assert_allclose(second.uncertainty, np.linalg.norm(second.probs - shifted[1], axis=1), rtol=1e-5)


def test_ll_needs_the_loss_head(manifest):
    from raydal.models import create_model

    torch.manual_seed(0)
    plain = create_model("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands, ll=False)
    with pytest.raises(QueryError, match="ll=True"):
        score_pool(plain, iter_batches(manifest, "pool", 16), "ll", 5)


def test_diverged_model_raises_clear_error(manifest):
    from raydal.models import create_model

    torch.manual_seed(0)
    broken = create_model("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands, ll=True)
    with torch.no_grad():
        broken.ll.out.bias.fill_(float("nan"))
    with pytest.raises(QueryError, match="non-finite.*diverged"):
        score_pool(broken, iter_batches(manifest, "pool", 16), "ll", 5)


# ---------------------------------------------------------------------- precision follows TrainConfig.amp


def test_scoring_precision_follows_the_amp_mode(model, manifest):
    images = read_split(manifest, "pool")["image"]
    full = score_batch(model, images, "cpu", amp="off")
    auto = score_batch(model, images, "cpu", amp="auto")  # "auto" is fp32 on CPU, as in training
    bf16 = score_batch(model, images, "cpu", amp="bf16")
    np.testing.assert_array_equal(auto["probs"], full["probs"])
    assert not np.array_equal(bf16["probs"], full["probs"])
    np.testing.assert_allclose(bf16["probs"], full["probs"], atol=0.05)  # the same model, lower precision
    # The LL head computes in float32 even under bf16 autocast: predicted losses stay distinct.
    assert bf16["pred_loss"].dtype == np.float32
    assert len(np.unique(bf16["pred_loss"])) == len(images)
    with pytest.raises(ConfigError, match="'amp' parameter of BlockScorer must be one of"):
        score_pool(model, iter_batches(manifest, "pool", 16), "mge", 5, amp=True)


def test_executor_scores_at_the_training_precision(model, manifest, tiny_shards, tmp_path):
    """LocalExecutor.query passes ALConfig.train's amp to the scorer (and "auto" when unset)."""
    from raydal.al.executor import LocalExecutor
    from raydal.config import ALConfig
    from raydal.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ckpt", model)
    pool_ids = read_split(manifest, "pool")["id"].tolist()
    reference = {
        amp: score_pool(model, iter_batches(manifest, "pool", 32), "mge", 5, amp=amp).probs for amp in ("off", "bf16")
    }
    for train, want in (({"amp": "bf16"}, "bf16"), ({"amp": "off"}, "off"), ({}, "off")):
        cfg = ALConfig(
            shards_dir=str(tiny_shards),
            state_dir=str(tmp_path / "s"),
            strategy="mge",
            backbone="smallcnn",
            executor="local",
            score_batch_size=32,
            train=train,
        )
        executor = LocalExecutor(cfg)
        assert executor.amp == train.get("amp", "auto")
        got = executor.query(str(ckpt), pool_ids, [], b=5, prev_probs=None, seed=0)
        np.testing.assert_array_equal(got.pool_probs, reference[want])
