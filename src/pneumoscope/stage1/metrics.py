"""Segmentation metrics, as the README defines them.

- ``iou``: pixel IoU pooled over all pixels (micro).
- ``iou_pos``: mean per-image IoU over images with non-empty truth.
- ``dice_kaggle``: mean per-image Dice over all images; 1 when both are empty.
- ``dice_pos``: mean per-image Dice over images with non-empty truth.
- ``pixel_accuracy``: fraction of correctly classified pixels.
- ``pos_empty``: share of images with non-empty truth whose predicted mask is empty (1.0 on every
  positive: the model has collapsed to drawing nothing).

Sums are kept so that shards (DDP ranks, batches) combine exactly.
"""

from __future__ import annotations

import numpy as np
import torch

CI_KEYS = ("iou", "pixel_accuracy", "iou_pos", "dice_kaggle", "dice_pos")  # reported with a 95 % interval (_lo, _hi)
_FIELDS = ("pixels", "correct", "inter", "union", "n", "dice_sum", "n_pos", "dice_pos_sum", "iou_pos_sum",
           "loss_sum", "loss_n", "n_pos_empty")


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
            n_pos_empty=(pos & ~p.reshape(n, -1).any(1)).sum(),
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
            "pos_empty": div(s["n_pos_empty"], s["n_pos"]),  # share of positive images predicted empty (1: collapse)
        }


def per_image_counts(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """What every metric above is made of, per image (boolean arrays N x ...): the basis of the
    bootstrap intervals, which resample images (by patient) and recompute the metrics from these."""
    p = np.asarray(pred).reshape(len(pred), -1).astype(bool)
    t = np.asarray(truth).reshape(len(truth), -1) > 0.5
    return {"inter": (p & t).sum(1), "union": (p | t).sum(1), "correct": (p == t).sum(1),
            "pixels": np.full(len(p), p.shape[1]), "dice": per_image_dice(p, t), "iou": per_image_iou(p, t),
            "pos": t.any(1), "truth_px": t.sum(1), "pred_px": p.sum(1)}


def metrics_of(counts: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, float]:
    """The metrics of the images ``idx`` (with repeats, as a bootstrap resample has them)."""
    c = {k: v[idx] for k, v in counts.items()}
    pos = c["pos"]
    nan = float("nan")
    union = c["union"].sum()
    return {"iou": float(c["inter"].sum() / union) if union > 0 else 1.0,
            "iou_pos": float(c["iou"][pos].mean()) if pos.any() else nan,
            "dice_kaggle": float(c["dice"].mean()) if len(idx) else nan,
            "dice_pos": float(c["dice"][pos].mean()) if pos.any() else nan,
            "pixel_accuracy": float(c["correct"].sum() / c["pixels"].sum()) if len(idx) else nan}


def intervals_of(counts: dict[str, np.ndarray], patients) -> dict:
    """95 % bootstrap intervals (patients resampled) of every metric of per-image ``counts``, with the
    numbers they rest on: ``{"ci95": {metric: [lo, hi]}, "n_patients", "bootstrap"}``."""
    from ..stats import Resampler, bootstrap

    resampler = Resampler.over(list(patients) if patients is not None else None, len(counts["pos"]))
    return {"ci95": bootstrap(lambda idx: metrics_of(counts, idx), resampler), "n_patients": resampler.n_patients,
            "bootstrap": {"draws": resampler.draws, "seed": resampler.seed, "unit": "patient", "level": 0.95}}


def with_intervals(pred: np.ndarray, truth: np.ndarray, patients) -> dict:
    """:func:`intervals_of` the per-image counts of ``pred`` against ``truth``."""
    return intervals_of(per_image_counts(pred, truth), patients)


def per_source(counts: dict[str, np.ndarray], patients, sources) -> dict[str, dict]:
    """The metrics (with intervals and n) of each source's images (``counts``: :func:`per_image_counts`),
    when the images come from several collections (e.g. SIIM positives and NIH normals): a model
    that learned the collection scores very differently on each."""
    sources = np.asarray(sources, dtype=object)
    if len(set(sources.tolist())) < 2:
        return {}
    out = {}
    for name in sorted(set(sources.tolist())):
        idx = np.flatnonzero(sources == name)
        sub = {k: v[idx] for k, v in counts.items()}
        pats = list(np.asarray(patients, dtype=object)[idx]) if patients is not None else None
        out[str(name)] = {**metrics_of(sub, np.arange(len(idx))), "n_images": int(len(idx)),
                          "n_positive": int(sub["pos"].sum()), **intervals_of(sub, pats)}
    return out


SIZE_BUCKETS = ((0.0, 0.005, "< 0.5 %"), (0.005, 0.02, "0.5-2 %"), (0.02, 1.01, "> 2 %"))  # share of the image


def per_size(counts: dict[str, np.ndarray], patients) -> dict[str, dict]:
    """Per size of the true finding (share of the image, :data:`SIZE_BUCKETS`), over the positives:
    n, mean Dice and the detection rate (share whose predicted mask touches the truth), each with a
    patient-bootstrap interval; and over the negatives, the share given a mask (false alarms).
    Pooled figures hide that most real pneumothoraces are small."""
    share = counts["truth_px"] / np.maximum(counts["pixels"], 1)
    pats = np.asarray(patients, dtype=object) if patients is not None else None
    out: dict[str, dict] = {}
    for lo, hi, name in SIZE_BUCKETS:
        idx = np.flatnonzero(counts["pos"] & (share >= lo) & (share < hi))
        out[name] = _rates(counts, idx, pats, {"dice": lambda c: c["dice"], "detected": lambda c: c["inter"] > 0})
    neg = np.flatnonzero(~counts["pos"])
    out["negatives"] = _rates(counts, neg, pats, {"false_alarm": lambda c: c["pred_px"] > 0})
    return out


def _rates(counts: dict, idx: np.ndarray, pats, of: dict) -> dict:
    """The means of ``of``'s per-image values over images ``idx``, with patient-bootstrap intervals."""
    from ..stats import Resampler, bootstrap

    if not len(idx):
        return {"n_images": 0}
    sub = {k: v[idx] for k, v in counts.items()}
    resampler = Resampler.over(list(pats[idx]) if pats is not None else None, len(idx))

    def values(i: np.ndarray) -> dict[str, float]:
        c = {k: v[i] for k, v in sub.items()}
        return {name: float(np.mean(f(c))) for name, f in of.items()}

    return {"n_images": int(len(idx)), **values(np.arange(len(idx))), "ci95": bootstrap(values, resampler)}


def empty_baseline(counts: dict[str, np.ndarray]) -> float:
    """``dice_kaggle`` of drawing nothing on every image: the share of images without a finding
    (a model below it does worse than no model)."""
    return float(np.mean(~counts["pos"])) if len(counts["pos"]) else float("nan")
