"""Stage 2 of a cross-validated stage-1 run: fitted and evaluated out of fold.

Every labelled image gets its features from the one fold model that never trained on it (its
probability map, and with ``seg-encoder`` that model's encoder); labelled images without a mask
(never seen by stage 1) are spread over the folds the same way. Table 2 is the out-of-fold
classification of every image: for each fold, a classifier tuned and fitted on the other folds'
features, its threshold chosen on their inner out-of-fold predictions, decides this fold's images.
The classifier saved in the run is then tuned and fitted on all of them. At prediction the features
come from the fold ensemble (the mean probability; with ``seg-encoder``, the members' encoder
features averaged): a shift these out-of-fold numbers do not measure, and said so.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import soundness
from ..config import Config
from ..data.cache import Cache
from ..data.folds import make_folds
from ..data.prepare import prepare_data
from ..errors import PneumoscopeError
from ..folders import Run, fold_folder
from ..stage1.unet import load_model
from . import classifier as clf
from .extractors import build_extractor
from .features import FeatureSet, compute_features
from .result import Stage2Result, table2
from .saved import PortableClassifier
from .shortcut import per_source_classification, source_check


def is_cross_validated(run: Run) -> bool:
    """Whether ``run`` is a fold ensemble (its split names each image's fold)."""
    split = run.read_split()
    return split is not None and "fold" in split.columns


def image_folds(run: Run, cache: Cache, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The labelled cache rows and the fold of each: the run's own for images with a mask, new
    patient-grouped stratified folds for the labelled images stage 1 never saw (no mask)."""
    split = run.read_split()
    fold_of = dict(zip(split["id"].astype(str), split["fold"].astype(int)))
    ids = cache.index["id"].astype(str)
    labelled = (cache.index["label"] >= 0).to_numpy()
    fold = ids.map(fold_of).to_numpy(dtype=float, copy=True)
    unseen = np.flatnonzero(labelled & np.isnan(fold))
    if len(unseen):
        sub = cache.index.iloc[unseen]
        try:
            fold[unseen] = make_folds(sub, k, seed)["fold"].to_numpy()
        except PneumoscopeError:  # too few of them for k stratified folds: round robin
            fold[unseen] = np.arange(len(unseen)) % k
    rows = np.flatnonzero(labelled & ~np.isnan(fold))
    return rows, fold[rows].astype(int)


def train_cls_folds(run: Run, cfg: Config, device: torch.device, cache: Cache | None):
    """Out-of-fold stage 2 of the fold ensemble ``run`` (see the module docstring); saves it in the run."""
    s2 = cfg.stage2
    if s2.data is not None:
        raise PneumoscopeError("stage2.data with a cross-validated run: its stage 2 is fitted and judged out of fold on "
                               "the run's own labelled images (add the folder to train-seg --data instead)")
    if cache is None:
        cache, _ = prepare_data(cfg)
    k = cfg.data.folds
    rows, fold = image_folds(run, cache, k, s2.seed)
    parts: list[FeatureSet] = []
    order = []
    note = ""
    for f in range(k):
        member = Run(fold_folder(run.root, f))
        unet, _ = load_model(member, device)
        phi, note = build_extractor(s2.feature_extractor, unet, s2.densenet_weights)
        here = rows[fold == f]
        parts.append(compute_features(unet, phi, cache, here, device, s2.batch_size, member.feature_cache(), member.weights_id()))
        order.append(np.flatnonzero(fold == f))
    back = np.argsort(np.concatenate(order))  # fold order -> row order
    X = np.concatenate([p.X for p in parts])[back]
    y = np.concatenate([p.labels for p in parts])[back]
    ids = np.concatenate([p.ids for p in parts])[back]
    probs = np.concatenate([p.probs for p in parts])[back]
    names = parts[0].names
    if len(np.unique(y)) < 2:
        raise PneumoscopeError(f"the labelled images hold one class only ({len(y)} images); stage 2 needs normal and "
                               "pneumothorax images")
    patients = cache.index["patient_id"].iloc[rows].tolist() if "patient_id" in cache.index else None
    p_before, p_after, thresholds = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y))
    for f in range(k):
        te, tr = fold == f, fold != f
        default = clf.fit({}, X[tr], y[tr], s2.seed)
        p_before[te] = default.predict_proba(X[te])[:, 1]
        tuned_f = clf.tune(X[tr], y[tr], s2.n_iter, s2.cv_folds, s2.scoring, s2.seed)
        final_f = clf.fit(tuned_f.params, X[tr], y[tr], s2.seed, s2.calibration, s2.cv_folds)
        inner = clf.out_of_fold(final_f, X[tr], y[tr], s2.cv_folds, s2.seed)
        thresholds[te], _ = clf.safe_threshold(y[tr], inner, s2.threshold_rule, s2.target_sensitivity)
        p_after[te] = final_f.predict_proba(X[te])[:, 1]
    before = clf.with_intervals(y, p_before, 0.5, patients)
    after = clf.with_intervals(y, p_after, thresholds, patients)
    tuned = clf.tune(X, y, s2.n_iter, s2.cv_folds, s2.scoring, s2.seed)
    final = clf.fit(tuned.params, X, y, s2.seed, s2.calibration, s2.cv_folds)
    threshold, threshold_note = clf.safe_threshold(y, clf.out_of_fold(final, X, y, s2.cv_folds, s2.seed),
                                                   s2.threshold_rule, s2.target_sensitivity)
    leakage = (f"Cross-validated: each of the {len(y)} labelled images has its features from the fold model that never "
               f"trained on it, and Table 2 is out of fold ({k} folds: each fold's images decided by a classifier tuned, "
               "fitted and thresholded on the other folds only). The saved classifier is fitted on all of them; at "
               "prediction its features come from the fold ensemble, a shift these numbers do not measure.")
    summary = {
        "feature_extractor": "densenet121" if note.startswith("DenseNet121") else "seg-encoder", "feature_note": note,
        "leakage": leakage,
        "evaluated_on": "out-of-fold", "folds": k,
        "n_features": len(names), "n_fit": len(y), "n_eval": len(y),
        "fit_ids": [str(i) for i in ids],  # evaluate-cls leaves these out
        "threshold": threshold, "threshold_rule": s2.threshold_rule, "calibration": s2.calibration,
        "fold_thresholds": sorted({float(t) for t in thresholds}),
        "tuning": dataclasses.asdict(tuned), "default_params": clf.DEFAULT_PARAMS,
        "before": before, "after": after,
        "after_minus_before": clf.paired_difference(y, p_before, 0.5, p_after, thresholds, patients),
    }
    if getattr(phi, "record", None):
        summary["feature_weights"] = phi.record  # the local DenseNet file (prediction checks it is the same)
    if threshold_note:
        summary["threshold_note"] = threshold_note
    summary["warnings"] = soundness.of_summary(summary)
    if "source" in cache.index:
        sources = cache.index["source"].iloc[rows].astype(str).tolist()
        by_source = per_source_classification(y, p_after, thresholds, sources)
        if by_source:
            summary["per_source"] = by_source
        check = source_check(X, sources, y, s2.seed, s2.cv_folds)
        if check is not None:
            summary["source_check"] = check
    table = table2(before, after)
    spec, boosters = PortableClassifier.from_fitted(final).to_data()
    run.save_classifier(spec, boosters, summary, names, table)
    from ..model_card import write_model_card

    write_model_card(run)
    test = FeatureSet(X, names, ids, y, probs)
    return Stage2Result(summary, table, test, p_before, p_after, cache, rows)
