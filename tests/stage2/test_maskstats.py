import math

import numpy as np
import pytest

from pneumoscope.stage2.maskstats import MASK_STAT_NAMES, mask_stats, meta_features


def test_hand_computed_statistics():
    prob = np.zeros((10, 10), np.float32)
    prob[1:3, 7:9] = 0.9  # 4 px, right half
    prob[6, 8] = 0.6  # 1 px, separate component
    prob[0, 0] = 0.4  # below 0.5
    s = dict(zip(MASK_STAT_NAMES, mask_stats(prob)))
    assert s["area_0.3"] == pytest.approx(6 / 100)
    assert s["area_0.5"] == pytest.approx(5 / 100)
    assert s["area_0.7"] == pytest.approx(4 / 100)
    assert s["max_prob"] == pytest.approx(0.9)
    assert s["topk_mean_prob"] == pytest.approx(0.9)  # top 1 of 100
    assert s["n_components"] == 2 and s["largest_component"] == pytest.approx(0.04)
    assert s["side"] == 1.0


def test_empty_mask():
    s = dict(zip(MASK_STAT_NAMES, mask_stats(np.zeros((8, 8), np.float32))))
    assert s["n_components"] == 0 and s["side"] == 0 and s["largest_component"] == 0


def test_metadata_encoding():
    np.testing.assert_array_equal(meta_features("M", 40.0, "PA"), [1, 40, 1])
    np.testing.assert_array_equal(meta_features("F", 7, "AP"), [0, 7, 0])
    assert all(math.isnan(v) for v in meta_features("", float("nan"), ""))
