import numpy as np
import pandas as pd
import pytest
import torch

from pneumoscope import config
from pneumoscope.folders import Run
from pneumoscope.stage1.postprocess import Rule, load_rule, save_rule, search


def test_rule_apply_hand_cases():
    p = np.zeros((10, 10), np.float32)
    p[0, 0] = 0.95  # one confident pixel: 1 % of the image
    p[0, 1:4] = 0.35  # extent above bottom 0.3
    assert Rule(0.9, 0.0, 0.3).apply(p).sum() == 4
    assert Rule(0.9, 0.02, 0.3).apply(p).sum() == 0  # needs 2 % above top
    assert Rule(0.5, 0.0, 0.5).apply(p).sum() == 1  # the plain threshold
    stack = np.stack([p, np.zeros_like(p)])
    assert Rule(0.9, 0.0, 0.3).apply(stack).reshape(2, -1).sum(1).tolist() == [4, 0]


def test_search_removes_small_false_positives():
    rng = np.random.default_rng(0)
    probs = np.zeros((20, 32, 32), np.float32)
    truths = np.zeros((20, 32, 32), np.uint8)
    for i in range(10):  # positives: a big confident blob
        truths[i, 5:15, 5:15] = 1
        probs[i, 5:15, 5:15] = 0.95
    for i in range(10, 20):  # negatives: a few noisy pixels above 0.5
        probs[i, rng.integers(0, 32, 3), rng.integers(0, 32, 3)] = 0.7
    rule, best, plain = search(probs, truths)
    assert plain == pytest.approx(0.5)  # every negative has a false positive
    assert best == pytest.approx(1.0) and rule.min_area > 0


def test_save_load_round_trip(tmp_path):
    run = Run(tmp_path)
    run.save_weights({"w": torch.ones(1)}, config.load("demo"), pd.DataFrame(), {})  # a rule belongs to weights
    assert load_rule(run) is None
    save_rule(run, Rule(0.8, 0.004, 0.3), 0.9, 0.8)
    assert load_rule(run) == Rule(0.8, 0.004, 0.3)


def test_area_bound_is_a_low_percentile_of_real_areas() -> None:
    from pneumoscope.stage1.postprocess import area_bound

    masks = np.zeros((21, 10, 10), np.uint8)
    for i in range(20):
        masks[i].flat[: i + 1] = 1  # areas 1 %, 2 %, ..., 20 %; the last mask is empty
    bound = area_bound(masks, percentile=5)
    assert 0.01 <= bound <= 0.02
    assert area_bound(np.zeros((3, 10, 10))) is None


def test_search_never_erases_a_finding_larger_than_the_bound() -> None:
    # 30 normals with a faint speck each, 10 positives whose true finding is small (2 % of the image):
    # unbounded, erasing everything below a large area wins; bounded, no minimum above 1 % is tried.
    rng = np.random.default_rng(0)
    probs = np.zeros((40, 32, 32), np.float32)
    truths = np.zeros_like(probs, dtype=np.uint8)
    for i in range(30):
        probs[i, rng.integers(0, 28), rng.integers(0, 28)] = 0.95
    for i in range(30, 40):
        truths[i, 4:8, 4:9] = 1
        probs[i, 4:8, 4:9] = 0.9 * (rng.random((4, 5)) > 0.6)
    rule, _, _ = search(probs, truths, max_min_area=0.01)
    assert rule.min_area <= 0.01
    unbounded, _, _ = search(probs, truths)
    assert unbounded.min_area >= rule.min_area
