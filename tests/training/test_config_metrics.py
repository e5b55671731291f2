"""TrainConfig validation, multilabel_metrics against hand-computed values, augmentation."""

import numpy as np
import pytest
import torch

from raydal.exceptions import ConfigError
from raydal.training import TrainConfig, augment_batch, multilabel_metrics


def test_config_defaults_follow_the_paper_ucmerced_schedule():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.ll_lambda, cfg.ll_margin) == (100, 10, 0.025, 0.1, 1.0)
    assert cfg.lr_decay_epoch == 80 and cfg.ll_stop_epoch == 60
    assert cfg.lr_at(79) == 0.025 and cfg.lr_at(80) == pytest.approx(0.0025)
    tree = TrainConfig(epochs=200, batch_size=100, lr=0.01)
    assert tree.lr_decay_epoch == 160 and tree.ll_stop_epoch == 120


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("epochs", 0, "The 'epochs' parameter of TrainConfig must be an int >= 1. Got 0 instead."),
        ("batch_size", 2.5, "'batch_size' parameter of TrainConfig must be an int >= 1. Got 2.5"),
        ("lr", 0, "'lr' parameter of TrainConfig must be a float > 0"),
        ("ll_stop_at", 1.5, "'ll_stop_at' parameter of TrainConfig must be a float in [0, 1]"),
        ("amp", "fp16", "'amp' parameter of TrainConfig must be one of ('auto', 'bf16', 'off')"),
        ("warm_start", "yes", "'warm_start' parameter of TrainConfig must be a bool"),
        ("lr_decay_factor", 0.0, "'lr_decay_factor'"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})
    assert message in str(err.value)


def test_config_from_dict_rejects_unknown_fields():
    assert TrainConfig.from_dict({"lr": 0.01}).lr == 0.01
    with pytest.raises(ConfigError, match=r"Unknown TrainConfig field\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.01})


def test_multilabel_metrics_hand_computed():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    p = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.0], [0.4, 0.8, 0.3]])
    m = multilabel_metrics(y, p)
    # predictions [[1,0,0],[1,1,0],[0,1,0]]: class 0 TP1 FP1 FN1, class 1 TP2, class 2 nothing
    assert m["micro_precision"] == pytest.approx(0.75) and m["micro_recall"] == pytest.approx(0.75)
    assert m["micro_f1"] == pytest.approx(0.75)
    assert m["per_class_f1"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["macro_f1"] == pytest.approx(0.5)
    # class 2 never occurs: the present-class mean is over classes 0 and 1 only
    assert m["macro_f1_present"] == pytest.approx(0.75) and m["n_present_classes"] == 2
    # AP class 0: ranks .9(+) .6(-) .4(+) -> (1 + 2/3) / 2; class 1: 1; class 2 has no positive
    assert m["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    assert m["n_samples"] == 3
    assert multilabel_metrics(y, p, threshold=0.35)["per_class_f1"][0] == pytest.approx(0.8)


def test_macro_f1_present_ignores_classes_absent_from_the_split():
    # 19 classes, 4 occur and are predicted perfectly: all-class macro-F1 is capped at 4/19.
    y = np.zeros((8, 19), dtype=np.uint8)
    y[np.arange(8), np.arange(8) % 4] = 1
    m = multilabel_metrics(y, y.astype(float))
    assert m["macro_f1"] == pytest.approx(4 / 19)
    assert m["macro_f1_present"] == pytest.approx(1.0) and m["n_present_classes"] == 4
    # A false positive on an absent class: that class is outside the present-class mean.
    p = y.astype(float)
    p[0, 10] = 0.9
    assert multilabel_metrics(y, p)["macro_f1_present"] == pytest.approx(1.0)
    assert np.isnan(multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 3)))["macro_f1_present"])


def test_multilabel_metrics_bad_input():
    with pytest.raises(ConfigError, match="equal shape"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        multilabel_metrics(np.zeros((1, 2)), np.array([[np.nan, 0.1]]))


def test_augment_is_a_seeded_dihedral_transform_per_sample():
    x = torch.rand(32, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, augment_batch(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(1)))
    seen = set()
    for i in range(len(x)):
        options = [torch.rot90(v, k, (1, 2)) for v in (x[i], x[i].flip(-1)) for k in range(4)]
        match = [j for j, o in enumerate(options) if torch.equal(o, a[i])]
        assert match, f"sample {i} is not a flip/rotation of its input"
        seen.add(match[0])
    assert len(seen) >= 6  # the transforms actually vary
    rect = augment_batch(torch.rand(16, 3, 8, 6), torch.Generator().manual_seed(0))
    assert rect.shape == (16, 3, 8, 6)
