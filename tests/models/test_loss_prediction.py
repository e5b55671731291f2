"""LL losses against hand-computed values (eq. 2; eq. 3 is train_step's, tests/training/test_loop.py)."""

import pytest
import torch

from raydal.exceptions import ConfigError
from raydal.models import LossPredictionModule, ll_pair_loss, random_pairs


def test_pair_loss_hand_computed():
    losses = torch.tensor([2.0, 1.0, 0.5, 0.5])
    pred = torch.tensor([0.3, 0.8, 0.1, 0.4])
    pairs = torch.tensor([[0, 1], [2, 3], [1, 2]])
    # (0,1): sign(+1) -> max(0, -(0.3-0.8) + 1) = 1.5
    # (2,3): tie, sign 0 -> max(0, 0 + 1) = 1.0 (the margin)
    # (1,2): sign(+1) -> max(0, -(0.8-0.1) + 1) = 0.3
    assert ll_pair_loss(losses, pred, pairs).item() == pytest.approx((1.5 + 1.0 + 0.3) / 3)
    # margin 0.5: 1.0, 0.5, 0.0 (clamped from -0.2)
    assert ll_pair_loss(losses, pred, pairs, margin=0.5).item() == pytest.approx(1.5 / 3)


def test_pair_loss_correct_order_beyond_margin_is_zero():
    losses = torch.tensor([3.0, 1.0])
    pred = torch.tensor([5.0, 2.0])  # right order, gap 3 > margin 1
    assert ll_pair_loss(losses, pred, torch.tensor([[0, 1]])).item() == 0.0
    assert ll_pair_loss(losses, pred, torch.tensor([[1, 0]])).item() == 0.0  # symmetric
    assert ll_pair_loss(losses, pred, torch.tensor([[0, 1]]), margin=4.0).item() == pytest.approx(1.0)


def test_pair_loss_gradient_reaches_predictions_not_targets():
    losses = torch.tensor([2.0, 1.0], requires_grad=True)
    pred = torch.tensor([0.0, 0.0], requires_grad=True)
    ll_pair_loss(losses, pred, torch.tensor([[0, 1]])).backward()
    assert pred.grad.tolist() == [-1.0, 1.0]  # push l_hat_0 up, l_hat_1 down
    assert losses.grad is None


def test_pair_loss_without_pairs_is_zero_and_bad_shapes_raise():
    pred = torch.zeros(1, requires_grad=True)
    assert ll_pair_loss(torch.ones(1), pred, torch.zeros(0, 2, dtype=torch.long)).item() == 0.0
    with pytest.raises(ConfigError, match="pairs"):
        ll_pair_loss(torch.ones(4), torch.ones(4), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="equal shape"):
        ll_pair_loss(torch.ones(4), torch.ones(3), torch.tensor([[0, 1]]))


def test_random_pairs_are_disjoint_seeded_and_cover_the_batch():
    p = random_pairs(7, torch.Generator().manual_seed(3))
    assert p.shape == (3, 2) and p.dtype == torch.long
    assert len(set(p.flatten().tolist())) == 6 and p.max() < 7
    assert torch.equal(p, random_pairs(7, torch.Generator().manual_seed(3)))
    assert not torch.equal(
        random_pairs(100, torch.Generator().manual_seed(3)), random_pairs(100, torch.Generator().manual_seed(4))
    )


def test_loss_prediction_module_shapes():
    module = LossPredictionModule([4, 8], hidden=5)
    out = module([torch.rand(3, 4, 8, 8), torch.rand(3, 8, 2, 2)])
    assert out.shape == (3,)
    assert sum(p.numel() for p in module.parameters()) == (4 * 5 + 5) + (8 * 5 + 5) + (10 + 1)
    with pytest.raises(ConfigError, match="2 feature maps"):
        module([torch.rand(3, 4, 8, 8)])
