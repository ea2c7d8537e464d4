import pytest
import torch

from pneumoscope.config import LossConfig
from pneumoscope.stage1.losses import CompositeLoss

BIG = 30.0  # logit so large that sigmoid is 0 or 1 to float precision


def _logits(pred):
    return (pred * 2 - 1) * BIG


def test_dice_half_overlap_is_two_thirds():
    truth = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    pred = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])
    loss = CompositeLoss(LossConfig(bce=0, dice=1, focal=0))
    total, parts = loss(_logits(pred), truth)
    assert float(total) == pytest.approx(1 - 2 / 3, abs=1e-4)  # Dice = 2*1/(1+2)


def test_bce_hand_computed():
    truth = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.tensor([[[[0.0, 0.0]]]])
    total, parts = CompositeLoss(LossConfig(bce=1, dice=0, focal=0))(logits, truth)
    assert float(total) == pytest.approx(0.693147, abs=1e-5)  # -log(0.5)


def test_focal_hand_computed():
    # p = sigmoid(0) = 0.5 for both pixels; alpha_t = 0.25 for the positive, 0.75 for the negative;
    # focal = alpha_t * (1-0.5)^2 * log 2; mean over pixels = (0.25 + 0.75) / 2 * 0.25 * log 2
    truth = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.zeros(1, 1, 1, 2)
    total, _ = CompositeLoss(LossConfig(bce=0, dice=0, focal=1, focal_alpha=0.25, focal_gamma=2.0))(logits, truth)
    assert float(total) == pytest.approx(0.5 * 0.25 * 0.693147, abs=1e-5)


def test_weights_combine_and_head_term():
    truth = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.tensor([[[[0.3, -0.2]]]])
    cfg = LossConfig(bce=0.5, dice=2.0, focal=3.0, cls_weight=0.7)
    total, parts = CompositeLoss(cfg)(logits, truth, torch.tensor([[0.0]]), torch.tensor([1.0]))
    expect = 0.5 * parts["bce"] + 2.0 * parts["dice"] + 3.0 * parts["focal"] + 0.7 * parts["cls"]
    assert float(total) == pytest.approx(expect, rel=1e-5)
    assert parts["cls"] == pytest.approx(0.693147, abs=1e-5)


def test_perfect_prediction_is_near_zero():
    truth = torch.zeros(2, 1, 8, 8)
    truth[0, 0, 2:5, 2:5] = 1
    total, _ = CompositeLoss(LossConfig())(_logits(truth), truth)
    assert float(total) < 1e-4
