"""Pictures a person looks at: a radiograph with a mask (and optionally the truth) drawn on it, a
Grad-CAM heat map over it. What ``predict`` writes, the report shows and the server sends."""

from __future__ import annotations

import cv2
import numpy as np

from .data.transforms import to_uint8
from .soundness import disagreement

PRED_BGR = (0, 0, 255)  # red: prediction
TEXT_BGR = (0, 230, 255)  # yellow: captions
TRUTH_BGR = (0, 200, 0)  # green: ground truth


def as_uint8(image: np.ndarray) -> np.ndarray:
    """A greyscale picture as uint8 (float images are taken to be in [0, 1])."""
    return image if image.dtype == np.uint8 else to_uint8(image)


def shrink(a: np.ndarray, max_side: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``a`` resized so that its long side is at most ``max_side`` (unchanged when it already is)."""
    scale = min(1.0, max_side / max(a.shape[:2]))
    if scale >= 1.0:
        return a
    size = (max(1, int(round(a.shape[1] * scale))), max(1, int(round(a.shape[0] * scale))))
    return cv2.resize(a, size, interpolation=interpolation)


def overlay(image: np.ndarray, pred: np.ndarray | None = None, truth: np.ndarray | None = None,
            alpha: float = 0.35, max_side: int = 1024) -> np.ndarray:
    """BGR uint8 picture: ``image`` (float [0,1] or uint8) with the prediction filled red and
    outlined, the ground truth outlined green; downscaled so the long side is at most ``max_side``."""
    out = cv2.cvtColor(as_uint8(shrink(image, max_side)), cv2.COLOR_GRAY2BGR)  # shrink first: less to convert
    size = out.shape[1::-1]

    def fit(m: np.ndarray) -> np.ndarray:
        return shrink(m.astype(np.uint8), max_side, cv2.INTER_NEAREST)

    thick = max(1, int(round(max(size) / 400)))
    if pred is not None and pred.any():
        p = fit(pred > 0)
        inside = p > 0  # blend only the masked pixels
        out[inside] = np.rint(out[inside] * (1 - alpha) + np.array(PRED_BGR, np.float32) * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(p, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, PRED_BGR, thick)
    if truth is not None and truth.any():
        contours, _ = cv2.findContours(fit(truth > 0), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, TRUTH_BGR, thick)
    return out


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """BGR uint8 of a heat map in [0, 1] (OpenCV's JET colour map)."""
    return cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)


def heat_layer(heat: np.ndarray) -> np.ndarray:
    """BGRA uint8 of a heat map: its colours, opaque where it is hot (the viewer's transparent layer)."""
    return np.dstack([heat_colours(heat), np.clip(heat * 255, 0, 255).astype(np.uint8)])


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, max_side: int = 1024) -> np.ndarray:
    """BGR uint8: ``image`` with the heat map blended over it, long side at most ``max_side``."""
    base = cv2.cvtColor(shrink(as_uint8(image), max_side), cv2.COLOR_GRAY2BGR)
    size = base.shape[1::-1]
    return cv2.addWeighted(base, 1 - alpha, heat_colours(cv2.resize(heat, size)), alpha, 0)


def result_caption(decision: str | None, p: float | None, threshold: float | None, mask_area_px: int) -> str:
    """One image's result in one line, as every picture of it says it: the decision with P(pneumothorax)
    and the threshold, and the stages' disagreement when they disagree (without stage 2: the mask area)."""
    if p is None or threshold is None:
        return f"mask {mask_area_px} px (no stage-2 classifier)"
    word = "PNEUMOTHORAX" if decision == "pneumothorax" else "no pneumothorax"
    apart = disagreement(decision, mask_area_px)
    return f"{word}: P = {p:.2f} (threshold {threshold:.2f})" + (f" - {apart}" if apart else "")


def with_caption(bgr: np.ndarray, lines: list[str], colour: tuple[int, int, int] = TEXT_BGR) -> np.ndarray:
    """``bgr`` with ``lines`` of text on a darkened band at its top left, scaled to the picture (in place)."""
    side = max(bgr.shape[:2])
    scale = max(0.4, side / 1400)
    font, weight = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(scale * 2)))
    sizes = [cv2.getTextSize(t, font, scale, weight)[0] for t in lines]
    pad = int(round(12 * scale))
    line_h = max(h for _, h in sizes) + pad
    width = min(bgr.shape[1], max(w for w, _ in sizes) + 2 * pad)
    height = min(bgr.shape[0], line_h * len(lines) + pad)
    bgr[:height, :width] //= 4  # darken the band so the text reads on any radiograph
    for k, text in enumerate(lines):
        cv2.putText(bgr, text, (pad, (k + 1) * line_h), font, scale, colour, weight, cv2.LINE_AA)
    return bgr
