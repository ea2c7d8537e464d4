"""XGBoost on stage-2 features: defaults, random search, threshold, calibration, metrics.

"Before tuning" is XGBoost's documented defaults (scikit-learn API: 100 trees, depth 6,
learning rate 0.3, no subsampling) with ``scale_pos_weight = negatives / positives``.
"After tuning" is a ``RandomizedSearchCV`` over depth, learning rate, trees, subsample,
column sample, min child weight, gamma, L1/L2 regularisation and class weight, scored by
stratified k-fold cross-validation; the default is kept when no candidate beats it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import loguniform, randint, uniform
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold, cross_val_predict, cross_val_score
from xgboost import XGBClassifier

from ..errors import PneumoscopeError

DEFAULT_PARAMS: dict = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.3, "subsample": 1.0,
                        "colsample_bytree": 1.0, "min_child_weight": 1, "gamma": 0.0, "reg_lambda": 1.0,
                        "reg_alpha": 0.0}


def search_space(pos_weight: float) -> dict:
    """Distributions of the random search (``scale_pos_weight`` around the class ratio)."""
    return {
        "max_depth": randint(2, 9),
        "learning_rate": loguniform(0.01, 0.3),
        "n_estimators": randint(50, 401),
        "subsample": uniform(0.6, 0.4),
        "colsample_bytree": uniform(0.2, 0.8),
        "min_child_weight": randint(1, 11),
        "gamma": uniform(0.0, 3.0),
        "reg_lambda": loguniform(0.1, 10.0),
        "reg_alpha": loguniform(1e-3, 1.0),
        "scale_pos_weight": [pos_weight * f for f in (0.5, 1.0, 2.0)],
    }


def positive_weight(y: np.ndarray) -> float:
    """negatives / positives, the usual ``scale_pos_weight``."""
    pos = int((y == 1).sum())
    return float((y == 0).sum()) / max(pos, 1)


def make_xgb(params: dict, pos_weight: float, seed: int = 0, n_jobs: int = 2) -> XGBClassifier:
    """An XGBoost classifier (``hist`` trees) with ``params`` on top of the defaults."""
    merged = {**DEFAULT_PARAMS, "scale_pos_weight": pos_weight, **params}
    return XGBClassifier(tree_method="hist", eval_metric="logloss", random_state=seed, n_jobs=n_jobs, **merged)


def folds_for(y: np.ndarray, k: int, seed: int) -> StratifiedKFold:
    """Stratified k-fold with k capped by the minority class size (at least 2 folds)."""
    minority = int(min((y == 0).sum(), (y == 1).sum()))
    if minority < 2:
        raise PneumoscopeError(f"the classifier needs at least 2 images of each class; got {minority} in the minority class")
    return StratifiedKFold(n_splits=max(2, min(k, minority)), shuffle=True, random_state=seed)


@dataclass
class TuneResult:
    """Outcome of the search."""

    params: dict  # chosen parameters (the defaults when they scored best)
    best_score: float  # cross-validated score of the chosen parameters
    default_score: float  # cross-validated score of the defaults, same folds
    n_candidates: int
    scoring: str


def tune(X: np.ndarray, y: np.ndarray, n_iter: int = 30, k: int = 5, scoring: str = "average_precision",
         seed: int = 0) -> TuneResult:
    """Random search; keeps the defaults unless a candidate scores higher on the same folds."""
    cv = folds_for(y, k, seed)
    pw = positive_weight(y)
    default_score = float(cross_val_score(make_xgb({}, pw, seed), X, y, cv=cv, scoring=scoring).mean())
    search = RandomizedSearchCV(make_xgb({}, pw, seed, n_jobs=1), search_space(pw), n_iter=n_iter, scoring=scoring,
                                cv=cv, random_state=seed, n_jobs=2, refit=False)
    search.fit(X, y)
    best = float(search.best_score_)
    if best > default_score:
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in search.best_params_.items()}
        return TuneResult(params, best, default_score, n_iter, scoring)
    return TuneResult({}, default_score, default_score, n_iter, scoring)


def fit(params: dict, X: np.ndarray, y: np.ndarray, seed: int = 0, calibration: str = "none", k: int = 5):
    """Fit the classifier (optionally calibrated by isotonic or sigmoid cross-validation)."""
    model = make_xgb(params, positive_weight(y), seed)
    if calibration in ("isotonic", "sigmoid"):
        return CalibratedClassifierCV(model, method=calibration, cv=folds_for(y, k, seed)).fit(X, y)
    if calibration != "none":
        raise PneumoscopeError(f"unknown stage2.calibration {calibration!r}; choose none, isotonic or sigmoid")
    return model.fit(X, y)


def out_of_fold(estimator, X: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validated P(positive) for the training images (for choosing the threshold)."""
    return cross_val_predict(clone(estimator), X, y, cv=folds_for(y, k, seed), method="predict_proba")[:, 1]


def choose_threshold(y: np.ndarray, p: np.ndarray, rule: str = "max_f1", target_sensitivity: float = 0.9) -> float:
    """Decision threshold: maximum F1, or the highest threshold reaching a target sensitivity."""
    if rule == "max_f1":
        prec, rec, thr = precision_recall_curve(y, p)
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
        return float(thr[int(np.argmax(f1))])
    if rule == "sensitivity":
        pos = np.sort(p[y == 1])[::-1]
        need = int(np.ceil(target_sensitivity * len(pos)))
        return float(pos[max(need, 1) - 1])
    raise PneumoscopeError(f"unknown stage2.threshold_rule {rule!r}; choose max_f1 or sensitivity")


def safe_threshold(y: np.ndarray, p: np.ndarray, rule: str = "max_f1", target_sensitivity: float = 0.9) -> tuple[float, str | None]:
    """:func:`choose_threshold`, never degenerate on the images it is chosen on: when the rule's threshold
    calls every image one class (sensitivity or specificity 0 on ``y``), Youden's J (sensitivity +
    specificity - 1, at its maximum) decides instead, or 0.5 when no threshold separates the classes.
    Returns the threshold and, when it fell back, one sentence saying so."""
    t = choose_threshold(y, p, rule, target_sensitivity)
    sens, spec = float((p[y == 1] >= t).mean()), float((p[y == 0] < t).mean())
    if sens > 0 and spec > 0:
        return t, None
    said = f"the {rule} threshold {t:.3f} gave sensitivity {sens:.3f} and specificity {spec:.3f} on the fitting images"
    cuts = np.unique(p)
    j = np.array([(p[y == 1] >= c).mean() + (p[y == 0] < c).mean() - 1 for c in cuts])
    if len(cuts) and j.max() > 0:
        best = float(cuts[int(np.argmax(j))])
        return best, f"{said}; the threshold of maximum Youden's J ({best:.3f}, J = {j.max():.3f}) is used instead"
    return 0.5, f"{said}, and no threshold separates the classes there; 0.5 is used (the classifier is no better than chance)"


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: bin-size-weighted mean |accuracy - confidence| over equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            err += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(err)


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray) -> dict:
    """Per-class precision/recall/F1 and the threshold-free and calibration metrics. ``threshold``: one,
    or one per image (cross-validation: each fold's classifier decides at its own)."""
    pred = (p >= threshold).astype(int)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    return {
        "threshold": float(np.median(threshold)),
        **({"thresholds": sorted({float(t) for t in np.ravel(threshold)})} if np.ndim(threshold) else {}),
        "per_class": {name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(sup[i])}
                      for i, name in enumerate(("normal", "pneumothorax"))},
        "accuracy": float((pred == y).mean()),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, p)) if both else float("nan"),
        "sensitivity": float(tp / max(tp + fn, 1)), "specificity": float(tn / max(tn + fp, 1)),
        "ece": expected_calibration_error(y, p),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def fast_roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties counted half): scikit-learn's value, without its
    per-call checks, which made 2,000 bootstrap draws take seconds."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((rankdata(p)[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fast_average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision as scikit-learn defines it (sum over distinct thresholds of the recall step
    times the precision there)."""
    n_pos = int((y == 1).sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]  # the end of each group of equal scores
    tp = np.cumsum(ys)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _flat_metrics(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray, idx: np.ndarray) -> dict[str, float]:
    yy, pp = y[idx], p[idx]
    pred = (pp >= (np.asarray(threshold)[idx] if np.ndim(threshold) else threshold)).astype(int)
    pos, neg = yy == 1, yy == 0
    both = pos.any() and neg.any()
    out = {"accuracy": float((pred == yy).mean()),
           "roc_auc": fast_roc_auc(yy, pp) if both else float("nan"),
           "average_precision": fast_average_precision(yy, pp) if both else float("nan"),
           "sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
           "specificity": float(1 - pred[neg].mean()) if neg.any() else float("nan"),
           "ece": expected_calibration_error(yy, pp)}
    for cls_value, name in ((0, "normal"), (1, "pneumothorax")):  # scikit-learn's per-class values, zero_division=0
        said, true = pred == cls_value, yy == cls_value
        hit = float((said & true).sum())
        prec = hit / said.sum() if said.any() else 0.0
        rec = hit / true.sum() if true.any() else 0.0
        out.update({f"{name}.precision": prec, f"{name}.recall": rec,
                    f"{name}.f1": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0})
    return out


def with_intervals(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray, patients=None) -> dict:
    """:func:`classification_metrics` plus ``ci95`` (95 % bootstrap intervals, patients resampled,
    of every number: per-class precision/recall/F1 as ``"pneumothorax.f1"``), ``n_images``,
    ``n_positive``, ``n_patients`` and the bootstrap settings."""
    from ..stats import Resampler, bootstrap

    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    m = classification_metrics(y, p, threshold)
    resampler = Resampler.over(patients, len(y))
    m.update(ci95=bootstrap(lambda idx: _flat_metrics(y, p, threshold, idx), resampler), n_images=int(len(y)),
             n_positive=int((y == 1).sum()), n_patients=resampler.n_patients,
             bootstrap={"draws": resampler.draws, "seed": resampler.seed, "unit": "patient", "level": 0.95})
    return m


def paired_difference(y: np.ndarray, p_a: np.ndarray, t_a: float | np.ndarray, p_b: np.ndarray, t_b: float | np.ndarray,
                      patients=None) -> dict:
    """B minus A (e.g. after tuning minus before) of every metric, with a paired bootstrap interval."""
    from ..stats import Resampler, paired

    y = np.asarray(y).astype(int)
    resampler = Resampler.over(patients, len(y))
    return paired(lambda idx: _flat_metrics(y, p_a, t_a, idx), lambda idx: _flat_metrics(y, p_b, t_b, idx), resampler, len(y))
