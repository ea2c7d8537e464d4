"""Stage 2 on a trained stage-1 run: data without leakage, features, classifier, Table 2.

No leakage: the images whose features train or evaluate the classifier are never images
the segmentation model trained on. With the stage-1 dataset, the classifier is fitted on
the stage-1 validation images and evaluated on the stage-1 test images. With a separate
classification dataset (``stage2.data``), images whose id is in the stage-1 training split
are dropped, and the rest is split (stratified, patient-grouped) into fit and evaluation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .. import soundness
from ..config import Config
from ..data.cache import Cache
from ..data.prepare import prepare_data
from ..data.split import make_split
from ..device import resolve_device
from ..errors import PneumoscopeError
from ..folders import Run
from ..stage1.pipeline import split_of_rows
from ..stage1.unet import load_model
from . import classifier as clf
from .crossval import is_cross_validated, train_cls_folds
from .extractors import build_extractor
from .features import compute_features
from .result import Stage2Result, table2
from .saved import PortableClassifier
from .shortcut import per_source_classification, source_check


def classification_sets(cfg: Config, run: Run, cache: Cache | None = None) -> tuple[Cache, np.ndarray, np.ndarray, str]:
    """Cache and (fit rows, evaluation rows) for the classifier, and a sentence on leakage.

    ``cache``: the stage-1 dataset's cache when the caller already has it open."""
    s2 = cfg.stage2
    if s2.data is None:
        if cache is None:
            cache, _ = prepare_data(cfg)
        part = split_of_rows(cache, run.read_split())
        fit, test = np.flatnonzero(part == "val"), np.flatnonzero(part == "test")
        note = ("Classifier fitted on the stage-1 validation images and evaluated on the stage-1 test images; "
                "the segmentation model never trained on either (validation only chose its best epoch).")
        unmasked = cache.index[(part == "") & (cache.index["label"].to_numpy() >= 0)]  # labelled, no mask: not in stage 1
        if len(unmasked) >= 2:
            parts = make_split(unmasked, 0.0, s2.test_fraction, s2.seed)
            rows = unmasked.index.to_numpy()
            fit = np.concatenate([fit, rows[(parts.split == "train").to_numpy()]])
            test = np.concatenate([test, rows[(parts.split == "test").to_numpy()]])
            note += (f" {len(unmasked)} labelled images without a mask (never seen by stage 1) were added, "
                     f"{int((parts.split == 'test').sum())} of them to the evaluation set.")
        return cache, fit, test, note
    dcfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=s2.data, layout=s2.layout))
    cache, _ = prepare_data(dcfg)
    seen = run.training_ids()
    usable = (cache.index["label"] >= 0) & ~cache.index["id"].astype(str).isin(seen)
    dropped = int((cache.index["id"].astype(str).isin(seen)).sum())
    sub = cache.index[usable]
    if sub.empty:
        raise PneumoscopeError(f"{s2.data}: no labelled images the segmentation model did not train on")
    parts = make_split(sub, 0.0, s2.test_fraction, s2.seed)
    rows = np.flatnonzero(usable.to_numpy())
    note = (f"Classifier fitted and evaluated on {s2.data} ({len(rows)} labelled images, "
            f"{int((parts.split == 'test').sum())} held out for evaluation, stratified and patient-grouped); "
            f"{dropped} images that the segmentation model trained on were excluded.")
    return cache, rows[(parts.split == "train").to_numpy()], rows[(parts.split == "test").to_numpy()], note


def train_cls(run: str | Path | Run, cfg: Config | None = None, device: torch.device | None = None,
              cache: Cache | None = None) -> Stage2Result:
    """Train and evaluate the stage-2 classifier of a stage-1 run; saves it in the run.

    ``cache``: the stage-1 dataset's cache, when the caller has it open (``run`` passes it)."""
    run = run if isinstance(run, Run) else Run(run)
    cfg = cfg or run.read_config()
    with run.writing("train-cls"):
        return _train_cls(run, cfg, device, cache)


def _train_cls(run: Run, cfg: Config, device: torch.device | None, cache: Cache | None) -> Stage2Result:
    s2 = cfg.stage2
    device = device or resolve_device("auto")
    if is_cross_validated(run):
        return train_cls_folds(run, cfg, device, cache)
    unet, _ = load_model(run, device)
    cache, fit_rows, test_rows, leakage = classification_sets(cfg, run, cache)
    phi, phi_note = build_extractor(s2.feature_extractor, unet, s2.densenet_weights)
    tag = run.weights_id()  # the stage-1 weights the features come from
    features = run.feature_cache()
    train = compute_features(unet, phi, cache, fit_rows, device, s2.batch_size, features, tag)
    test = compute_features(unet, phi, cache, test_rows, device, s2.batch_size, features, tag)
    for name, fs in (("fit", train), ("evaluation", test)):
        if len(np.unique(fs.labels)) < 2:
            raise PneumoscopeError(f"the classifier's {name} set has one class only ({len(fs.labels)} images); "
                                   "it needs normal and pneumothorax images (see stage2.data)")
    default = clf.fit({}, train.X, train.labels, s2.seed)
    p_before = default.predict_proba(test.X)[:, 1]
    patients = cache.index["patient_id"].iloc[test_rows].tolist() if "patient_id" in cache.index else None
    before = clf.with_intervals(test.labels, p_before, 0.5, patients)
    tuned = clf.tune(train.X, train.labels, s2.n_iter, s2.cv_folds, s2.scoring, s2.seed)
    final = clf.fit(tuned.params, train.X, train.labels, s2.seed, s2.calibration, s2.cv_folds)
    oof = clf.out_of_fold(final, train.X, train.labels, s2.cv_folds, s2.seed)
    threshold, threshold_note = clf.safe_threshold(train.labels, oof, s2.threshold_rule, s2.target_sensitivity)
    p_after = final.predict_proba(test.X)[:, 1]
    after = clf.with_intervals(test.labels, p_after, threshold, patients)
    summary = {
        "feature_extractor": phi.name, "feature_note": phi_note, "leakage": leakage,
        "n_features": len(train.names), "n_fit": len(train.labels), "n_eval": len(test.labels),
        "fit_ids": cache.index["id"].iloc[fit_rows].astype(str).tolist(),  # evaluate-cls leaves these out
        "threshold": threshold, "threshold_rule": s2.threshold_rule, "calibration": s2.calibration,
        "tuning": dataclasses.asdict(tuned), "default_params": clf.DEFAULT_PARAMS,
        "before": before, "after": after,
        "after_minus_before": clf.paired_difference(test.labels, p_before, 0.5, p_after, threshold, patients),
    }
    if getattr(phi, "record", None):
        summary["feature_weights"] = phi.record  # the local DenseNet file (prediction checks it is the same)
    if threshold_note:
        summary["threshold_note"] = threshold_note
    summary["warnings"] = soundness.of_summary(summary)  # one line each: said by train-cls, the report and the model card
    if "source" in cache.index:  # several collections: per-source metrics and whether the source is learnable
        src_fit, src_test = (cache.index["source"].iloc[r].astype(str).tolist() for r in (fit_rows, test_rows))
        by_source = per_source_classification(test.labels, p_after, threshold, src_test)
        if by_source:
            summary["per_source"] = by_source
        check = source_check(np.concatenate([train.X, test.X]), src_fit + src_test,
                             np.concatenate([train.labels, test.labels]), s2.seed, s2.cv_folds)
        if check is not None:
            summary["source_check"] = check
    table = table2(before, after)
    spec, boosters = PortableClassifier.from_fitted(final).to_data()
    run.save_classifier(spec, boosters, summary, train.names, table)
    from ..model_card import write_model_card

    write_model_card(run)  # now with stage 2
    return Stage2Result(summary, table, test, p_before, p_after, cache, test_rows)
