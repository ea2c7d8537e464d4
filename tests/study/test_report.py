"""The report's example grid: one row per kind, a row with no example says so."""

from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd

from pneumoscope.study.report import overlay_grid


def test_overlay_grid_says_none_for_an_empty_row(tmp_path):
    n, size = 6, 64
    labels = np.array([1, 1, 1, 0, 0, 0])
    p_after = np.array([0.9, 0.8, 0.2, 0.1, 0.1, 0.2])  # no false positive at threshold 0.5
    images = np.full((n, size, size), 128, np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:3, 20:40, 10:20] = 255
    res = SimpleNamespace(
        test=SimpleNamespace(labels=labels, probs=np.zeros((n, size, size), np.float16)),
        p_after=p_after, summary={"threshold": 0.5}, test_rows=np.arange(n),
        cache=SimpleNamespace(images=images, masks=masks, index=pd.DataFrame({"has_mask": labels == 1})))
    path = overlay_grid(res, tmp_path / "grid.png", per_kind=4, tile=100)
    grid = cv2.imread(str(path))
    assert grid.shape == (300, 150 + 4 * 100, 3)
    fp_first_tile = grid[100:200, 150:250]
    assert (fp_first_tile < 200).any()  # the "none of 6" text, not a blank tile
    assert (grid[100:200, 250:] == 255).all()  # the rest of the row stays blank
