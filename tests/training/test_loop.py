"""The training loop and the in-process launcher on learnable in-memory data."""

import json
import shutil

import numpy as np
import pytest
import torch

from raydal.exceptions import ConfigError, ModelError
from raydal.models import ModelSpec, create_model, load_checkpoint, read_checkpoint_meta, save_checkpoint
from raydal.training import (
    TrainConfig,
    as_epoch_source,
    build_initial_model,
    evaluate,
    fit,
    train_in_process,
)
from raydal.training.loop import CheckpointPolicy

SPEC = ModelSpec("smallcnn", num_classes=4, in_channels=3, ll=True)
CPU = torch.device("cpu")


def fast_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 16, "lr": 0.025, "seed": 0, **kw})


def batches_of(split, size=16):
    return [{k: v[i : i + size] for k, v in split.items()} for i in range(0, len(split["image"]), size)]


def test_training_improves_f1_over_init(train_split, val_split, tmp_path):
    cfg = fast_cfg(epochs=6)
    before = evaluate(build_initial_model(SPEC, cfg, None), batches_of(val_split), CPU)
    result = train_in_process(SPEC, cfg, train_split, val_split, tmp_path, device=CPU)
    assert [h["epoch"] for h in result.history] == list(range(1, 7))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["val_micro_f1"] > before["micro_f1"] + 0.2
    assert result.metrics["val_micro_f1"] > 0.7


def test_launcher_writes_a_checkpoint_that_scores_like_the_last_validation(train_split, val_split, tmp_path):
    cfg = fast_cfg(epochs=2)
    result = train_in_process(SPEC, cfg, train_split, val_split, tmp_path, device=CPU)
    assert result.checkpoint_dir == tmp_path / "checkpoint"
    assert json.loads((tmp_path / "history.json").read_text()) == json.loads(json.dumps(result.history))
    meta = read_checkpoint_meta(result.checkpoint_dir)
    assert meta["extra"]["train_config"]["epochs"] == 2
    model = load_checkpoint(result.checkpoint_dir)
    scores = evaluate(model, batches_of(val_split), CPU, return_probs=True)
    assert scores["micro_f1"] == pytest.approx(result.metrics["val_micro_f1"])
    assert scores["macro_f1_present"] == pytest.approx(result.metrics["val_macro_f1_present"])  # logged per epoch
    assert scores["loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)
    assert scores["probs"].shape == (80, 4) and list(scores["ids"]) == list(val_split["id"])


def test_training_is_reproducible_from_the_seed(train_split, tmp_path):
    a = train_in_process(SPEC, fast_cfg(epochs=1), train_split, None, tmp_path / "a", device=CPU)
    b = train_in_process(SPEC, fast_cfg(epochs=1), train_split, None, tmp_path / "b", device=CPU)
    c = train_in_process(SPEC, fast_cfg(epochs=1, seed=1), train_split, None, tmp_path / "c", device=CPU)
    assert a.metrics["train_loss"] == b.metrics["train_loss"] != c.metrics["train_loss"]


def _params(model):
    return [p.detach().clone() for p in model.backbone.parameters()]


def _train_backbone(cfg, train_split):
    model = build_initial_model(SPEC, cfg, None)
    fit(model, cfg, as_epoch_source(train_split, cfg.batch_size, cfg.seed), CPU, lambda m, c: None)
    return _params(model)


def test_ll_gradient_stop_in_the_loop(train_split):
    """After ll_stop_epoch the LL loss leaves the backbone alone: lambda changes nothing."""
    stopped = dict(epochs=1, ll_stop_at=0.0, augment=True)
    for p, q in zip(
        _train_backbone(fast_cfg(ll_lambda=0.0, **stopped), train_split),
        _train_backbone(fast_cfg(ll_lambda=1.0, **stopped), train_split),
    ):
        torch.testing.assert_close(p, q)
    joint = dict(epochs=1, ll_stop_at=1.0)
    diffs = [
        (p - q).abs().max().item()
        for p, q in zip(
            _train_backbone(fast_cfg(ll_lambda=0.0, **joint), train_split),
            _train_backbone(fast_cfg(ll_lambda=1.0, **joint), train_split),
        )
    ]
    assert max(diffs) > 1e-4


def test_ll_loss_gives_backbone_gradient_only_before_the_stop_epoch():
    model = create_model("smallcnn", 4, 3, ll=True, seed=0)
    x = torch.rand(8, 3, 32, 32)
    for detach, expect_grad in ((False, True), (True, False)):
        model.zero_grad(set_to_none=True)
        model(x, detach_ll=detach).pred_loss.sum().backward()
        grads = [p.grad for p in model.backbone.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == expect_grad


def test_warm_start_loads_previous_weights_cold_start_does_not(train_split, tmp_path):
    previous = create_model("smallcnn", 4, 3, ll=True, seed=123)
    save_checkpoint(tmp_path / "prev", previous)
    warm = build_initial_model(SPEC, fast_cfg(warm_start=True), tmp_path / "prev")
    cold = build_initial_model(SPEC, fast_cfg(warm_start=False), tmp_path / "prev")
    for p, w, c, f in zip(previous.parameters(), warm.parameters(), cold.parameters(), SPEC.build(seed=0).parameters()):
        assert torch.equal(p, w)
        assert torch.equal(c, f)  # the seeded fresh init
    assert not torch.equal(previous.head.weight, cold.head.weight)
    # Through the launcher: a near-zero learning rate keeps the warm-started weights.
    tiny = fast_cfg(epochs=1, lr=1e-12, momentum=0.0, weight_decay=0.0, warm_start=True)
    result = train_in_process(SPEC, tiny, train_split, None, tmp_path / "warm", tmp_path / "prev", device=CPU)
    trained = load_checkpoint(result.checkpoint_dir)
    for p, q in zip(previous.parameters(), trained.parameters()):
        torch.testing.assert_close(p, q)
    assert read_checkpoint_meta(result.checkpoint_dir)["extra"]["warm_started_from"] == str(tmp_path / "prev")


def test_warm_start_from_a_mismatched_checkpoint_raises(tmp_path):
    save_checkpoint(tmp_path / "prev", create_model("smallcnn", 5, 3, ll=True))
    with pytest.raises(ModelError, match="num_classes"):
        build_initial_model(SPEC, fast_cfg(warm_start=True), tmp_path / "prev")


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(train_split, val_split, tmp_path):
    cfg = fast_cfg(epochs=4, ll_stop_at=0.5, lr_decay_at=0.75)
    kept = {}

    def keep(metrics, folder):
        if folder is not None:
            kept[metrics["epoch"]] = shutil.copytree(folder, tmp_path / f"e{metrics['epoch']}")

    source = as_epoch_source(train_split, cfg.batch_size, cfg.seed)
    val = as_epoch_source(val_split, 32, None)
    full = build_initial_model(SPEC, cfg, None)
    history = fit(
        full, cfg, source, CPU, keep, val_batches=val, checkpoint=CheckpointPolicy(every_epochs=2, every_seconds=None)
    )
    assert sorted(kept) == [2, 4]
    assert [h["checkpointed"] for h in history] == [False, True, False, True]
    assert {"model.pt", "model.json", "train_state.pt"} <= {p.name for p in kept[2].iterdir()}

    resumed = create_model("smallcnn", 4, 3, ll=True, seed=99)  # weights come from the checkpoint
    reported = []
    history2 = fit(
        resumed, cfg, source, CPU, lambda m, c: reported.append(m["epoch"]), val_batches=val, resume_dir=kept[2]
    )
    assert reported == [3, 4]
    assert [h["epoch"] for h in history2] == [1, 2, 3, 4]
    assert history2[-1]["train_loss"] == pytest.approx(history[-1]["train_loss"], rel=1e-5)
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q)


def test_batch_sources(train_split):
    source = as_epoch_source(train_split, 50, seed=3)
    e0, e0_again, e1 = list(source(0)), list(source(0)), list(source(1))
    assert [len(b["image"]) for b in e0] == [50, 50, 50, 10]
    assert np.array_equal(e0[0]["id"], e0_again[0]["id"]) and not np.array_equal(e0[0]["id"], e1[0]["id"])
    assert sorted(np.concatenate([b["id"] for b in e0])) == sorted(train_split["id"])
    listed = batches_of(train_split)
    assert as_epoch_source(listed, 16, 0)(5) is listed
    with pytest.raises(ConfigError, match="one-shot iterator"):
        as_epoch_source(iter(listed), 16, 0)
    with pytest.raises(ConfigError, match="'labels'"):
        as_epoch_source({"image": train_split["image"]}, 16, 0)


def test_bad_inputs_raise_config_errors(train_split, tmp_path):
    with pytest.raises(ConfigError, match="out_dir"):
        train_in_process(SPEC, fast_cfg(), train_split)
    wrong = ModelSpec("smallcnn", num_classes=7, in_channels=3)
    with pytest.raises(ConfigError, match="4 classes but the model has 7"):
        train_in_process(wrong, fast_cfg(epochs=1), train_split, None, tmp_path, device=CPU)
    one = {k: v[:1] for k, v in train_split.items()}
    with pytest.raises(ConfigError, match="no training batch"):
        train_in_process(SPEC, fast_cfg(epochs=1), one, None, tmp_path, device=CPU)


def test_in_process_training_on_prepared_shards(tiny_shards, tmp_path):
    """The launcher reads what the data layer writes: read_split in memory, iter_batches per epoch."""
    from raydal.data.shards import iter_batches, load_manifest, read_ids, read_split

    manifest = load_manifest(tiny_shards)
    labeled = list(read_ids(manifest, "pool"))[:30]
    spec = ModelSpec("smallcnn", num_classes=manifest.num_classes, in_channels=manifest.bands)
    result = train_in_process(
        spec,
        fast_cfg(epochs=2, batch_size=10),
        read_split(manifest, "pool", ids=labeled),
        lambda epoch: iter_batches(manifest, "val", 16),
        tmp_path,
        device=CPU,
    )
    assert result.metrics["train_samples"] == 30
    assert result.metrics["val_n_samples"] == manifest.splits["val"]["count"]
    scores = evaluate(load_checkpoint(result.checkpoint_dir), iter_batches(manifest, "val", 16), CPU)
    assert scores["micro_f1"] == pytest.approx(result.metrics["val_micro_f1"])


@pytest.mark.slow
def test_densenet121_full_size_training_step(tmp_path):
    """The paper's model at TreeSatAI size (288 x 288, 4 bands): one short epoch."""
    rng = np.random.default_rng(0)
    data = {
        "image": rng.integers(0, 256, (4, 288, 288, 4), dtype=np.uint8),
        "labels": (rng.random((4, 15)) < 0.3).astype(np.uint8),
    }
    spec = ModelSpec("densenet121", num_classes=15, in_channels=4)
    result = train_in_process(spec, fast_cfg(epochs=1, batch_size=2, lr=0.01), data, data, tmp_path, device=CPU)
    assert np.isfinite(result.metrics["train_loss"]) and result.metrics["val_n_samples"] == 4
    model = load_checkpoint(result.checkpoint_dir)
    with torch.no_grad():
        out = model(torch.rand(1, 4, 288, 288))
    assert [tuple(f.shape[1:]) for f in out.features] == [(256, 72, 72), (512, 36, 36), (1024, 18, 18), (1024, 9, 9)]


def test_train_step_trains_the_ll_head_only_when_the_model_has_one(train_split):
    from raydal.training.loop import make_optimizers, train_step

    cfg = fast_cfg()
    batch = {k: v[:8] for k, v in train_split.items()}
    for ll in (True, False):
        model = create_model("smallcnn", 4, 3, ll=ll, seed=0)
        optimizers = make_optimizers(model, cfg)
        assert (optimizers.adam is not None) == ll  # no LL module: no Adam, no ranking loss
        before = _params(model)
        step = train_step(model, batch, cfg, optimizers, device=CPU, generator=torch.Generator().manual_seed(0))
        assert step.samples == 8 and step.bce_sum > 0
        assert (step.ll_loss is not None) == ll
        assert any(not torch.equal(p, q) for p, q in zip(before, _params(model)))


def test_fit_without_ll_head_logs_no_ranking_loss(train_split):
    cfg = fast_cfg(epochs=1)
    model = create_model("smallcnn", 4, 3, ll=False, seed=0)
    history = fit(model, cfg, as_epoch_source(train_split, cfg.batch_size, cfg.seed), CPU, lambda m, c: None)
    assert np.isnan(history[0]["train_ll_loss"]) and np.isfinite(history[0]["train_loss"])
