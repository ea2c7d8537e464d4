"""Hand-made features of a predicted probability mask and of the DICOM metadata."""

from __future__ import annotations

import math

import cv2
import numpy as np

AREA_THRESHOLDS = (0.3, 0.5, 0.7)
MASK_STAT_NAMES = [*(f"area_{t}" for t in AREA_THRESHOLDS), "max_prob", "topk_mean_prob", "n_components",
                   "largest_component", "side"]
META_NAMES = ["sex_male", "age", "view_pa"]


def mask_stats(prob: np.ndarray) -> np.ndarray:
    """Statistics of one probability map (H, W): areas (fractions) at several thresholds,
    max and top-1% mean probability, connected components at 0.5, largest component
    (fraction), side of the mass centre (-1 image left, +1 image right, 0 empty)."""
    h, w = prob.shape
    flat = prob.reshape(-1)
    k = max(1, flat.size // 100)
    topk = np.partition(flat, flat.size - k)[-k:].mean()
    binary = (prob > 0.5).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    largest = stats[1:, cv2.CC_STAT_AREA].max() / flat.size if n > 1 else 0.0
    total = float(prob.sum())
    side = 0.0 if total < 1e-6 else float(np.sign((prob.sum(0) * (np.arange(w) - (w - 1) / 2)).sum()))
    return np.array([*((prob > t).mean() for t in AREA_THRESHOLDS), flat.max(), topk, n - 1, largest, side],
                    dtype=np.float32)


def meta_features(sex: str, age: float, view: str) -> np.ndarray:
    """DICOM/CSV metadata as numbers; NaN when unknown (XGBoost handles missing values)."""
    s = str(sex).strip().upper()
    v = str(view).strip().upper()
    a = float(age) if age is not None and not (isinstance(age, float) and math.isnan(age)) else math.nan
    return np.array([1.0 if s == "M" else 0.0 if s == "F" else math.nan, a,
                     1.0 if v == "PA" else 0.0 if v == "AP" else math.nan], dtype=np.float32)
