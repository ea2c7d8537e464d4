"""Answers that say when they are worthless or disagree with themselves.

A classifier's numbers that show it no better than chance, in one line each: checked after fitting and
on every evaluation, and said wherever the numbers appear (train-cls, the report, the model card,
evaluate-cls). And one image's two answers that disagree (:func:`disagreement`): stage 2 calls it
pneumothorax with no mask to show where, or stage 1 draws a mask that stage 2 calls normal.

Two signs, read from :func:`.classifier.with_intervals`' output:

- its ROC AUC interval contains 0.5 (or lies below it): these images do not show it better than chance;
- at its operating threshold it calls no pneumothorax image positive (sensitivity 0) or every normal
  image positive (specificity 0): a decision that carries no information about the image.

The threshold itself is never left degenerate on the images it was chosen on:
:func:`pneumoscope.stage2.classifier.safe_threshold` falls back and says so.
"""

from __future__ import annotations

CHANCE = 0.5


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def warnings(m: dict, on: str) -> list[str]:
    """The signs of a worthless classifier in the metrics ``m`` of the images ``on`` describes
    (e.g. "the evaluation images"); empty when there is none."""
    out = []
    auc = m.get("roc_auc")
    lo, hi = (m.get("ci95", {}).get("roc_auc") or [None, None])[:2]
    if _finite(auc) and _finite(lo) and _finite(hi):
        if hi < CHANCE:
            out.append(f"ROC AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] on {on}: below chance (the classifier ranks them the wrong way round)")
        elif lo <= CHANCE:
            out.append(f"ROC AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] on {on}: the interval contains 0.5, so these images do not "
                       "show the classifier to be better than chance")
    per = m.get("per_class", {})
    n_pos = int(per.get("pneumothorax", {}).get("support", 0))
    n_neg = int(per.get("normal", {}).get("support", 0))
    t = m.get("threshold")
    at = f"at threshold {t:.3f}" if _finite(t) else "at its threshold"
    if n_pos and m.get("sensitivity") == 0:
        out.append(f"{at} it calls none of the {n_pos} pneumothorax images of {on} positive (sensitivity 0)")
    if n_neg and m.get("specificity") == 0:
        out.append(f"{at} it calls every one of the {n_neg} normal images of {on} pneumothorax (specificity 0)")
    return out


def of_summary(summary: dict) -> list[str]:
    """The warnings of a stage-2 summary: as saved, or computed from its numbers (older summaries)."""
    if isinstance(summary.get("warnings"), list):
        return [str(w) for w in summary["warnings"]]
    out = [] if not summary.get("threshold_note") else [str(summary["threshold_note"])]
    for stage in ("before", "after"):
        if isinstance(summary.get(stage), dict):
            out += warnings(summary[stage], f"the evaluation images ({stage} tuning)")
    return out


NOT_LOCALISED = "positive, not localised"  # stage 2: pneumothorax; stage 1: no mask
SEGMENTED_NORMAL = "segmented, classified normal"  # stage 1: a mask; stage 2: normal


def disagreement(decision: str | None, mask_area_px: int) -> str | None:
    """The words for stage 1 and stage 2 disagreeing on one image, or None when they agree (or
    without stage 2). Every output of a prediction says them: predictions.csv, the overlays, the
    DICOM SR (as its own coded qualifier) and burned-in overlay, the server's answer and the viewer."""
    if decision == "pneumothorax" and mask_area_px == 0:
        return NOT_LOCALISED
    if decision == "normal" and mask_area_px > 0:
        return SEGMENTED_NORMAL
    return None
