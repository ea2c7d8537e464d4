"""Pictures a person looks at: a radiograph with a mask (and optionally the truth) drawn on it."""

from __future__ import annotations

import cv2
import numpy as np

PRED_BGR = (0, 0, 255)  # red: prediction
TRUTH_BGR = (0, 200, 0)  # green: ground truth


def overlay(image: np.ndarray, pred: np.ndarray | None = None, truth: np.ndarray | None = None,
            alpha: float = 0.35, max_side: int = 1024) -> np.ndarray:
    """BGR uint8 picture: ``image`` (float [0,1] or uint8) with the prediction filled red and
    outlined, the ground truth outlined green; downscaled so the long side is at most ``max_side``."""
    img = image if image.dtype == np.uint8 else np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    scale = min(1.0, max_side / max(img.shape))
    size = (max(1, int(round(img.shape[1] * scale))), max(1, int(round(img.shape[0] * scale))))

    def fit(m: np.ndarray) -> np.ndarray:
        return cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) if scale < 1 else m.astype(np.uint8)

    out = cv2.cvtColor(cv2.resize(img, size, interpolation=cv2.INTER_AREA) if scale < 1 else img, cv2.COLOR_GRAY2BGR)
    thick = max(1, int(round(max(size) / 400)))
    if pred is not None and pred.any():
        p = fit(pred > 0)
        colour = np.zeros_like(out)
        colour[:] = PRED_BGR
        out = np.where(p[..., None] > 0, cv2.addWeighted(out, 1 - alpha, colour, alpha, 0), out)
        contours, _ = cv2.findContours(p, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, PRED_BGR, thick)
    if truth is not None and truth.any():
        contours, _ = cv2.findContours(fit(truth > 0), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, TRUTH_BGR, thick)
    return out
