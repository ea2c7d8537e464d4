import math

import numpy as np
import pytest

from pneumoscope.stage1.metrics import SegMetrics, per_image_dice


def test_hand_computed_table():
    # image 0: truth 2 px, prediction covers 1 of them -> dice 2/3, iou 1/2
    # image 1: both empty -> dice 1 (kaggle), not in *_pos
    # image 2: truth empty, prediction 1 px -> dice 0
    truth = np.zeros((3, 2, 2), bool)
    pred = np.zeros((3, 2, 2), bool)
    truth[0, 0, :] = True
    pred[0, 0, 0] = True
    pred[2, 1, 1] = True
    m = SegMetrics()
    m.update(pred, truth, loss=0.5)
    r = m.compute()
    assert r["dice_pos"] == pytest.approx(2 / 3)
    assert r["iou_pos"] == pytest.approx(0.5)
    assert r["dice_kaggle"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert r["iou"] == pytest.approx(1 / 3)  # pooled: inter 1, union 3
    assert r["pixel_accuracy"] == pytest.approx(10 / 12)
    assert r["loss"] == pytest.approx(0.5) and r["n_positive"] == 1


def test_merge_equals_single_pass():
    rng = np.random.default_rng(0)
    pred, truth = rng.random((6, 4, 4)) > 0.5, rng.random((6, 4, 4)) > 0.7
    whole = SegMetrics()
    whole.update(pred, truth, 1.0)
    a, b = SegMetrics(), SegMetrics()
    a.update(pred[:2], truth[:2], 1.0)
    b.update(pred[2:], truth[2:], 1.0)
    a.merge(b)
    assert a.compute() == pytest.approx(whole.compute())


def test_no_positive_gives_nan_not_zero():
    m = SegMetrics()
    m.update(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool))
    r = m.compute()
    assert math.isnan(r["dice_pos"]) and r["dice_kaggle"] == 1.0 and math.isnan(r["loss"])
    assert per_image_dice(np.ones((1, 2)), np.zeros((1, 2)))[0] == 0.0
