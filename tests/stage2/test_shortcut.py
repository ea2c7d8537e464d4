"""The shortcut check: features that give away the collection are called out; per-source metrics."""

import numpy as np
import pytest

from pneumoscope.stage1.metrics import per_image_counts, per_source
from pneumoscope.stage2.shortcut import per_source_classification, source_check


def _data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    sources = np.array(["siim"] * (n // 2) + ["nih"] * (n // 2))
    labels = rng.integers(0, 2, n)
    return rng, sources, labels


def test_a_learnable_source_and_an_unlearnable_label_is_called_a_shortcut():
    rng, sources, labels = _data()
    X = np.c_[(sources == "siim") * 3.0 + rng.normal(0, 0.1, len(sources)), rng.normal(size=(len(sources), 3))]
    out = source_check(X, sources.tolist(), labels, seed=0, k=3)
    assert out["source_auc"] > 0.95 and out["label_auc"] < 0.75
    assert "may be learning the collection rather than the disease" in out["warning"]
    assert out["sources"]["siim"]["n_images"] == 30


def test_a_learnable_label_says_nothing():
    rng, sources, labels = _data(1)
    X = np.c_[labels * 3.0 + rng.normal(0, 0.1, len(labels)), rng.normal(size=(len(labels), 3))]
    out = source_check(X, sources.tolist(), labels, seed=0, k=3)
    assert out["label_auc"] > 0.95 and "warning" not in out
    assert source_check(X, ["one"] * len(labels), labels) is None


def test_per_source_metrics():
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.1, 0.8, 0.7, 0.3])
    out = per_source_classification(y, p, 0.5, ["a", "a", "a", "a", "b", "b"])
    assert out["a"]["sensitivity"] == 0.5 and out["a"]["specificity"] == 0.5 and out["a"]["roc_auc"] == pytest.approx(0.75)
    assert out["b"] == {"n_images": 2, "n_positive": 1, "sensitivity": 1.0, "specificity": 1.0, "roc_auc": 1.0}
    truth = np.zeros((4, 8, 8), bool)
    truth[:2, 2:5, 2:5] = True
    pred = truth.copy()
    pred[3, 0, 0] = True  # a false speck on a normal of source b
    counts = per_image_counts(pred, truth)
    seg = per_source(counts, None, ["a", "a", "b", "b"])
    assert seg["a"]["dice_pos"] == 1.0 and seg["b"]["dice_kaggle"] == 0.5 and seg["b"]["n_positive"] == 0
    assert "ci95" in seg["a"] and per_source(counts, None, ["a"] * 4) == {}
