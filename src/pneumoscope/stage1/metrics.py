"""Segmentation metrics, as the README defines them.

- ``iou``: pixel IoU pooled over all pixels (micro).
- ``iou_pos``: mean per-image IoU over images with non-empty truth.
- ``dice_kaggle``: mean per-image Dice over all images; 1 when both are empty.
- ``dice_pos``: mean per-image Dice over images with non-empty truth.
- ``pixel_accuracy``: fraction of correctly classified pixels.

Sums are kept so that shards (DDP ranks, batches) combine exactly.
"""

from __future__ import annotations

import numpy as np
import torch

_FIELDS = ("pixels", "correct", "inter", "union", "n", "dice_sum", "n_pos", "dice_pos_sum", "iou_pos_sum",
           "loss_sum", "loss_n")


def per_image_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice per image for boolean arrays (N, ...); 1 where both are empty."""
    p = pred.reshape(len(pred), -1).astype(bool)
    t = truth.reshape(len(truth), -1).astype(bool)
    inter = (p & t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))


def per_image_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU per image for boolean arrays (N, ...); 1 where both are empty."""
    p = pred.reshape(len(pred), -1).astype(bool)
    t = truth.reshape(len(truth), -1).astype(bool)
    inter = (p & t).sum(1)
    union = (p | t).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


class SegMetrics:
    """Accumulates segmentation metrics over batches of binary predictions and truths."""

    def __init__(self) -> None:
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64)

    def update(self, pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, loss: float | None = None) -> None:
        """Add a batch: ``pred`` and ``truth`` boolean-like, shape (N, ...); ``loss`` the batch mean."""
        p = (pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)).astype(bool)
        t = (truth.detach().cpu().numpy() if isinstance(truth, torch.Tensor) else np.asarray(truth)) > 0.5
        n = len(p)
        pos = t.reshape(n, -1).any(1)
        dice = per_image_dice(p, t)
        iou = per_image_iou(p, t)
        vals = dict(
            pixels=p.size, correct=(p == t).sum(), inter=(p & t).sum(), union=(p | t).sum(), n=n,
            dice_sum=dice.sum(), n_pos=pos.sum(), dice_pos_sum=dice[pos].sum(), iou_pos_sum=iou[pos].sum(),
            loss_sum=(loss * n if loss is not None else 0.0), loss_n=(n if loss is not None else 0),
        )
        self.sums += torch.tensor([float(vals[f]) for f in _FIELDS], dtype=torch.float64)

    def merge(self, other: "SegMetrics") -> None:
        """Add another accumulator's sums."""
        self.sums += other.sums

    def compute(self) -> dict[str, float]:
        """The metrics; NaN where undefined (e.g. ``dice_pos`` with no positive image)."""
        s = dict(zip(_FIELDS, self.sums.tolist()))

        def div(a: float, b: float) -> float:
            return a / b if b > 0 else float("nan")

        return {
            "loss": div(s["loss_sum"], s["loss_n"]),
            "iou": div(s["inter"], s["union"]) if s["union"] > 0 else (1.0 if s["pixels"] else float("nan")),
            "iou_pos": div(s["iou_pos_sum"], s["n_pos"]),
            "dice_kaggle": div(s["dice_sum"], s["n"]),
            "dice_pos": div(s["dice_pos_sum"], s["n_pos"]),
            "pixel_accuracy": div(s["correct"], s["pixels"]),
            "n_images": int(s["n"]),
            "n_positive": int(s["n_pos"]),
        }
