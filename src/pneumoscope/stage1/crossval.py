"""Cross-validated stage 1 (``train-seg --folds K``): one model per fold, out-of-fold predictions of
every labelled image, and the fold ensemble as the run's model.

The run folder ``out`` holds ``folds/fold-<k>/`` (ordinary runs: fold ``k`` is their test part, a
validation part of the other folds chose their epoch) and, at its top, what ``predict``, ``serve``,
``listen``, ``export`` and the Python API load: the K members as one network (the mean of their
probabilities, :class:`.unet.FoldEnsemble`), the post-processing rule searched on the out-of-fold
predictions of every image (its minimum area held under :func:`.postprocess.area_bound`), and the
metrics of those out-of-fold predictions (Table 1 on every labelled image, per fold, per source and
per size of finding). Those post-processed metrics are themselves cross-validated: each fold's
images are judged with a rule searched on the other folds' predictions only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from .. import config as config_mod
from ..config import Config
from ..data.cache import Cache
from ..data.folds import ensemble_split, fold_split, make_folds
from ..data.prepare import prepare_data
from ..device import resolve_device
from ..errors import PneumoscopeError
from ..folders import Run, fold_folder
from . import postprocess
from .evaluation import collapse_warnings, evaluate_probs, metrics_of_probs
from .metrics import SegMetrics
from .unet import load_model


def fold_run(run: Run, k: int) -> Run:
    """The run of fold ``k``'s model inside a cross-validated run."""
    return Run(fold_folder(run.root, k))


def member_config(cfg: Config) -> Config:
    """The config each fold's model trains with (one split: its fold's)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, folds=0))


def _finished(sub: Run, cfg: Config, split: pd.DataFrame) -> bool:
    """Whether ``sub`` already holds this fold's finished model (same config, same split)."""
    try:
        if not (sub.has_weights() and sub.metrics_path.is_file()):
            return False
        if sub.metrics_path.stat().st_mtime_ns < sub.weights_path().stat().st_mtime_ns:
            return False  # weights newer than its metrics: a retraining that did not finish
        saved = sub.read_split()
        same_split = saved is not None and saved[["id", "split"]].astype(str).equals(split[["id", "split"]].astype(str))
        return same_split and config_mod.to_dict(sub.read_config()) == config_mod.to_dict(cfg)
    except PneumoscopeError:
        return False


def train_folds(cfg: Config, run: Run, resume: bool = False, cache: Cache | None = None, skipped: list | None = None,
                *, train_one: Callable[..., dict],
                say: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict:
    """Train ``cfg.data.folds`` models and write their ensemble, rule and out-of-fold metrics into ``run``.

    ``resume``: folds already finished with the same config and split are kept, an interrupted one
    continues from its own resume checkpoint. ``train_one(cfg, run, resume=, cache=, skipped=, split=)``
    trains one fold's model (:func:`.pipeline.train_seg`, which calls this). Returns the out-of-fold metrics."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PneumoscopeError("--folds trains its folds one after another in one process; run it without torchrun "
                               "(or train one fold per torchrun job with --set data.folds=0)")
    if cfg.model.init_from:
        raise PneumoscopeError("--folds with --init-from is not supported: each fold would start from a model that "
                               "trained on its test images")
    if cache is None:
        cache, skipped = prepare_data(cfg)
    index = cache.index
    seg_rows = np.flatnonzero(index["has_mask"].to_numpy())
    if not (index["label"].to_numpy()[seg_rows] > 0).any():
        raise PneumoscopeError(f"{cfg.data.path}: no pneumothorax masks in this data; segmentation training needs them")
    k_folds = cfg.data.folds
    folds = make_folds(index.iloc[seg_rows], k_folds, cfg.data.split_seed)
    one = member_config(cfg)
    members = []
    for k in range(k_folds):
        sub = fold_run(run, k)
        split = fold_split(folds, k, cfg.data.val_fraction, cfg.data.split_seed)
        n_test = int((split["split"] == "test").sum())
        n_pos = int(((split["split"] == "test") & (split["label"] > 0)).sum())
        if resume and _finished(sub, one, split):
            say(f"fold {k + 1}/{k_folds}: finished before ({sub.root}), kept")
        else:
            say(f"fold {k + 1}/{k_folds}: training on {int((split['split'] == 'train').sum())} images, "
                f"validating on {int((split['split'] == 'val').sum())}, predicting its {n_test} ({n_pos} with a "
                f"pneumothorax) -> {sub.root}")
            train_one(one, sub, resume=resume, cache=cache, skipped=skipped, split=split)
        members.append(sub)
    with run.writing("train-seg"):
        return _ensemble(cfg, run, cache, seg_rows, folds, members, list(skipped or []))


def _ensemble(cfg: Config, run: Run, cache: Cache, seg_rows: np.ndarray, folds: pd.DataFrame, members: list[Run],
              skipped: list) -> dict:
    device = resolve_device(cfg.train.device)
    fold_of = folds["fold"].to_numpy()
    truths = np.asarray(cache.masks[seg_rows])
    probs = np.zeros(truths.shape, dtype=np.float32)
    per_fold, warnings, states, loss_sum = [], [], [], 0.0
    initial: dict = {}  # the local weights file every fold began from (one config: the same file)
    for k, sub in enumerate(members):
        here = fold_of == k
        model, mcfg = load_model(sub, device)
        m, p = evaluate_probs(model, mcfg, cache, seg_rows[here], device)
        probs[here] = p
        loss_sum += m["loss"] * int(here.sum())
        saved = sub.read_metrics()
        per_fold.append({"fold": k, "n_images": int(here.sum()), "n_positive": m["n_positive"],
                         **{key: m[key] for key in ("iou", "dice_kaggle", "dice_pos", "pos_empty")},
                         "epochs_run": saved.get("epochs_run"), "best_epoch": saved.get("best_epoch")})
        warnings += [f"fold {k}: {w}" for w in saved.get("warnings", [])]
        initial = saved.get("initial_weights") or initial
        states.append(sub.load_weights()[0])
    objective = cfg.train.rule_objective
    kept = np.zeros(truths.shape, dtype=bool)
    fold_rules = []
    for k in range(len(members)):  # each fold judged with a rule searched on the other folds only
        here = fold_of == k
        rule_k, _, _ = postprocess.search(probs[~here], truths[~here], objective, postprocess.area_bound(truths[~here]))
        kept[here] = rule_k.apply(probs[here])
        fold_rules.append(rule_k.to_dict())
    bound = postprocess.area_bound(truths)
    rule, score, plain = postprocess.search(probs, truths, objective, bound)

    ensemble_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, members=len(members)))
    split = ensemble_split(folds)
    state = {f"members.{k}.{name}": t for k, member in enumerate(states) for name, t in member.items()}
    run.create()
    run.clear_derived()
    run.write_split(split)
    run.write_config(cfg)
    run.write_skipped(skipped)
    run.save_weights(state, ensemble_cfg, split, {"folds": len(members), "members": [str(m.root) for m in members]})
    postprocess.save_rule(run, rule, score, plain, objective, bound,
                          searched_on=f"the out-of-fold predictions of all {len(seg_rows)} images")
    acc = SegMetrics()
    acc.update(probs > cfg.train.threshold, truths)
    metrics = acc.compute()
    metrics["loss"] = loss_sum / len(seg_rows)
    metrics = metrics_of_probs(run, cfg, cache, seg_rows, probs, metrics, kept=kept, rule_info=rule.to_dict())
    metrics["postprocessed"]["rule_note"] = ("each fold's images judged with the rule searched on the other folds' "
                                             "out-of-fold predictions (fold_rules); predict applies 'rule', searched on all")
    metrics["postprocessed"]["fold_rules"] = fold_rules
    per_image = metrics.pop("per_image").assign(fold=fold_of)
    metrics.update(split="out-of-fold", folds=len(members), per_fold=per_fold, encoder=cfg.model.encoder, size=cfg.data.size,
                   evaluated_on=(f"out-of-fold: each of the {len(seg_rows)} labelled images predicted by the one fold "
                                 "model that never trained on it (its epoch chosen on a validation part of the other folds)"),
                   n_skipped=len(skipped), warnings=[*warnings, *collapse_warnings(metrics, cfg.model.encoder, "out-of-fold")])
    if initial:
        metrics["initial_weights"] = initial
    run.write_per_image(per_image)
    run.write_metrics(metrics)
    from ..model_card import write_model_card

    write_model_card(run)
    return metrics
