"""Matplotlib figures of a study: training curves, ROC/PR, confusion matrix, calibration."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(histories: dict[str, pd.DataFrame], path: Path) -> Path:
    """Loss (train, val) and validation IoU / Dice per epoch, one colour per encoder."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (enc, h) in enumerate(histories.items()):
        c = f"C{i}"
        a.plot(h.epoch, h.train_loss, "--", color=c, label=f"{enc} train")
        a.plot(h.epoch, h.val_loss, "-", color=c, label=f"{enc} val")
        b.plot(h.epoch, h.val_iou, "-", color=c, label=f"{enc} IoU")
        b.plot(h.epoch, h.val_dice_pos, ":", color=c, label=f"{enc} Dice (pos)")
    a.set(xlabel="epoch", ylabel="composite loss", title="Loss")
    b.set(xlabel="epoch", ylabel="validation", title="Validation IoU and Dice", ylim=(0, 1))
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return _save(fig, path)


def roc_pr(y: np.ndarray, curves: dict[str, np.ndarray], path: Path) -> Path:
    """ROC and precision-recall curves of several probability vectors."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        a.plot(fpr, tpr, label=name)
        b.plot(rec, prec, label=name)
    a.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    b.axhline(y.mean(), color="grey", lw=0.8, ls=":")
    a.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    b.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    return _save(fig, path)


def confusion(cm: dict, path: Path, title: str) -> Path:
    """A 2x2 confusion matrix with counts."""
    m = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=13)
    ax.set_xticks([0, 1], ["normal", "pneumothorax"])
    ax.set_yticks([0, 1], ["normal", "pneumothorax"])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def calibration(y: np.ndarray, curves: dict[str, np.ndarray], path: Path, bins: int = 10) -> Path:
    """Reliability diagram: observed frequency against mean predicted probability, each point with
    the number of images in its bin (a point of 2 images says little)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    for name, p in curves.items():
        frac, mean = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        ids = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p)  # scikit-learn's binning
        counts = np.bincount(ids, minlength=bins)
        (line,) = ax.plot(mean, frac, "o-", label=name)
        for x, f, n in zip(mean, frac, counts[counts > 0]):
            ax.annotate(str(int(n)), (x, f), textcoords="offset points", xytext=(3, 3), fontsize=6, color=line.get_color())
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    return _save(fig, path)
