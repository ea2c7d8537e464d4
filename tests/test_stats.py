"""Bootstrap intervals on cases whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.stage1.metrics import SegMetrics, metrics_of, per_image_counts, with_intervals
from pneumoscope.stats import Resampler, bootstrap, describe, interval, paired, too_wide


def _mean(values):
    return lambda idx: {"mean": float(np.mean(values[idx]))}


def test_the_interval_of_a_mean_matches_the_normal_approximation():
    values = np.array([0.0, 1.0] * 200)  # p = 0.5, n = 400: mean 0.5, standard error 0.025
    lo, hi = bootstrap(_mean(values), Resampler.over(None, len(values)))["mean"]
    assert lo == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006) and hi == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)


def test_a_constant_metric_has_a_zero_width_interval():
    assert bootstrap(_mean(np.full(30, 0.7)), Resampler.over(None, 30))["mean"] == pytest.approx([0.7, 0.7])


def test_images_of_one_patient_are_drawn_together():
    values = np.random.default_rng(0).random(50)
    single = bootstrap(_mean(values), Resampler.over([str(i) for i in range(50)], 50))["mean"]
    twice = np.repeat(values, 2)  # every patient imaged twice: no more information than once
    grouped = bootstrap(_mean(twice), Resampler.over([str(i) for i in range(50) for _ in range(2)], 100))["mean"]
    naive = bootstrap(_mean(twice), Resampler.over(None, 100))["mean"]
    assert grouped == pytest.approx(single)
    assert naive[1] - naive[0] < 0.8 * (single[1] - single[0])  # treating the copies as patients: too narrow


def test_a_paired_difference_of_a_shifted_model_is_exact():
    values = np.random.default_rng(1).random(40)
    out = paired(_mean(values), _mean(values + 0.1), Resampler.over(None, 40), 40)["mean"]
    assert out["difference"] == pytest.approx(0.1) and out["ci95"] == pytest.approx([0.1, 0.1])
    same = paired(_mean(values), _mean(values), Resampler.over(None, 40), 40)["mean"]
    assert same["ci95"] == [0.0, 0.0]


def test_undefined_draws_are_left_out():
    lo, hi, defined = interval([float("nan"), 0.2, 0.4, float("nan"), 0.3])
    assert defined == 3 and lo == pytest.approx(0.205) and hi == pytest.approx(0.395)
    assert np.isnan(interval([float("nan")])[0])


def test_segmentation_metrics_from_per_image_counts_equal_the_accumulator():
    rng = np.random.default_rng(2)
    truth = np.zeros((12, 16, 16), bool)
    truth[:6, 4:9, 3:10] = True
    pred = truth ^ (rng.random(truth.shape) < 0.05)
    pred[7] = False
    acc = SegMetrics()
    acc.update(pred, truth)
    want = acc.compute()
    got = metrics_of(per_image_counts(pred, truth), np.arange(12))
    for k in got:
        assert got[k] == pytest.approx(want[k]), k
    out = with_intervals(pred, truth, ["a", "a", "b"] + [str(i) for i in range(9)])
    assert out["n_patients"] == 11 and out["bootstrap"]["unit"] == "patient"
    for k, (lo, hi) in out["ci95"].items():
        assert lo <= want[k] + 1e-9 <= hi + 2e-9 or k == "iou", (k, lo, hi, want[k])


def test_the_printout_names_n_and_says_when_too_few_positives():
    m = {"dice_pos": 0.41, "ci95": {"dice_pos": [0.2, 0.6]}, "n_images": 22, "n_positive": 7, "n_patients": 22}
    line = describe(m, ["dice_pos"])
    assert line.startswith("dice_pos 0.4100 [0.2000, 0.6000]; n = 22 images (7 positive, 22 patients)")
    assert "too wide to say much" in line and too_wide(12) is None


def test_the_fast_classification_metrics_equal_scikit_learns():
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    from pneumoscope.stage2.classifier import _flat_metrics

    rng = np.random.default_rng(3)
    for trial in range(30):
        n = int(rng.integers(4, 40))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        p = np.round(rng.random(n), 1 if trial % 2 else 6)  # with and without ties
        got = _flat_metrics(y, p, 0.5, np.arange(n))
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p))
        assert got["average_precision"] == pytest.approx(average_precision_score(y, p))
        prec, rec, f1, _ = precision_recall_fscore_support(y, (p >= 0.5).astype(int), labels=[0, 1], zero_division=0)
        for i, name in enumerate(("normal", "pneumothorax")):
            assert (got[f"{name}.precision"], got[f"{name}.recall"], got[f"{name}.f1"]) == pytest.approx((prec[i], rec[i], f1[i]))
