"""Is the model learning the collection rather than the disease? Checks for mixed sources.

When positives and negatives come from different collections (SIIM-ACR positives, NIH normals),
a classifier can separate them by the scanner, the processing or the text burned into the corner.
Two numbers say whether that is possible here, both cross-validated on the stage-2 features of every
classifier image with the same model (XGBoost's defaults, stratified folds):

- ``source_auc``: how well the features predict the *source* of an image (one source against the
  rest, averaged over sources);
- ``label_auc``: how well they predict the *label*.

When the source is at least as easy to predict as the label, the report says in one line that the
model may be learning the collection. Metrics per source show where the score comes from.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from . import classifier as clf


def _cv_auc(X: np.ndarray, y: np.ndarray, seed: int, k: int) -> float:
    minority = int(min((y == 0).sum(), (y == 1).sum()))
    if minority < 2:
        return float("nan")
    folds = StratifiedKFold(n_splits=max(2, min(k, minority)), shuffle=True, random_state=seed)
    p = cross_val_predict(clf.make_xgb({}, clf.positive_weight(y), seed), X, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def source_check(X: np.ndarray, sources: list[str], labels: np.ndarray, seed: int = 0, k: int = 5) -> dict | None:
    """``source_auc``, ``label_auc``, the counts per source and a warning line when the source is the
    easier target; None with a single source."""
    sources = np.asarray(sources, dtype=object)
    names = sorted(set(sources.tolist()))
    if len(names) < 2:
        return None
    labels = np.asarray(labels).astype(int)
    per = {str(n): _cv_auc(X, (sources == n).astype(int), seed, k) for n in names}
    source_auc = float(np.nanmean(list(per.values()))) if any(v == v for v in per.values()) else float("nan")
    label_auc = _cv_auc(X, labels, seed, k)
    out = {"source_auc": source_auc, "source_auc_per_source": per, "label_auc": label_auc, "n_images": int(len(labels)),
           "sources": {str(n): {"n_images": int((sources == n).sum()), "n_positive": int(labels[sources == n].sum())}
                       for n in names}}
    if source_auc == source_auc and label_auc == label_auc and source_auc >= label_auc:
        out["warning"] = (f"the features predict the source of an image (AUC {source_auc:.2f}) at least as well as its "
                          f"label (AUC {label_auc:.2f}): the model may be learning the collection rather than the disease")
    return out


def per_source_classification(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray,
                              sources: list[str]) -> dict[str, dict]:
    """Sensitivity, specificity and (with both classes) ROC AUC of each source's evaluation images
    (``threshold``: one, or one per image)."""
    sources = np.asarray(sources, dtype=object)
    names = sorted(set(sources.tolist()))
    if len(names) < 2:
        return {}
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    out = {}
    for n in names:
        sel = sources == n
        yy, pred = y[sel], (p[sel] >= (np.asarray(threshold)[sel] if np.ndim(threshold) else threshold)).astype(int)
        pos, neg = yy == 1, yy == 0
        out[str(n)] = {"n_images": int(sel.sum()), "n_positive": int(pos.sum()),
                       "sensitivity": float(pred[pos].mean()) if pos.any() else None,
                       "specificity": float(1 - pred[neg].mean()) if neg.any() else None,
                       "roc_auc": float(roc_auc_score(yy, p[sel])) if pos.any() and neg.any() else None}
    return out
