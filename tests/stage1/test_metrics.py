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


def test_per_size_buckets_and_empty_baseline() -> None:
    from pneumoscope.stage1.metrics import empty_baseline, per_image_counts, per_size

    truth = np.zeros((6, 20, 20), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 0, 0] = 1                  # 0.25 %: small, missed
    truth[1, :2, :2] = 1                # 1 %: medium, found
    pred[1, :2, :2] = 1
    truth[2, :10, :10] = 1              # 25 %: large, found
    pred[2, :10, :10] = 1
    pred[3, 5, 5] = 1                   # a negative with a false alarm; 4 and 5 are clean negatives
    counts = per_image_counts(pred, truth)
    sizes = per_size(counts, [f"p{i}" for i in range(6)])
    assert [sizes[b]["n_images"] for b in ("< 0.5 %", "0.5-2 %", "> 2 %")] == [1, 1, 1]
    assert sizes["< 0.5 %"]["detected"] == 0.0 and sizes["0.5-2 %"]["detected"] == 1.0
    assert sizes["> 2 %"]["dice"] == pytest.approx(1.0)
    assert sizes["negatives"]["n_images"] == 3
    assert sizes["negatives"]["false_alarm"] == pytest.approx(1 / 3)
    assert empty_baseline(counts) == pytest.approx(0.5)
