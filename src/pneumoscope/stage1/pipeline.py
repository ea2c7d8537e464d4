"""Stage 1 from a config: data, split, training, evaluation of the best checkpoint."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import distributed
from ..config import Config
from ..data.cache import Cache
from ..data.layouts import LAYOUTS
from ..data.prepare import prepare_data
from ..data.split import make_split, split_summary
from ..errors import PneumoscopeError
from ..files import check_writable_folder
from ..folders import Run
from . import postprocess
from .crossval import train_folds
from .evaluation import collapse_warnings, evaluate_rows
from .trainer import check_resumable, train_segmentation
from .unet import canonical_encoder

METRIC_KEYS = ("loss", "iou", "iou_pos", "dice_kaggle", "dice_pos", "pixel_accuracy")


def split_of_rows(cache: Cache, split_df: pd.DataFrame | None) -> np.ndarray:
    """The split name (train/val/test, or "" when not in the split) of every cache row."""
    if split_df is None:
        return np.full(len(cache), "", dtype=object)
    return cache.index["id"].map(dict(zip(split_df["id"], split_df["split"]))).fillna("").to_numpy()


def train_seg(cfg: Config, out: str | Run, resume: bool = False, cache: Cache | None = None,
              skipped: list | None = None, split: pd.DataFrame | None = None) -> dict:
    """Train one U-Net as configured, then evaluate its best checkpoint on the test split.

    Writes the run folder ``out`` (config, split, history, checkpoints, metrics, post-processing
    rule, and the list of skipped items). Returns the test metrics (empty on DDP ranks > 0).
    ``cache`` and ``skipped``: the dataset when the caller has already prepared it; ``split``: the
    train/val/test assignment to use (a fold's), instead of a new one. With ``data.folds`` >= 2,
    cross-validation (:mod:`.crossval`): one model per fold, and their ensemble in ``out``.
    """
    run = out if isinstance(out, Run) else Run(out)
    check_training_config(cfg)
    check_writable_folder(run.root)
    if cfg.data.folds >= 2:
        return train_folds(cfg, run, resume, cache, skipped, train_one=train_seg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 writes, and holds the folder
        return _train_seg(cfg, run, resume, cache, skipped, split)
    with run.writing("train-seg"):
        return _train_seg(cfg, run, resume, cache, skipped, split)


def _train_seg(cfg: Config, run: Run, resume: bool, cache: Cache | None, skipped: list | None,
               preset_split: pd.DataFrame | None = None) -> dict:
    if resume and cfg.model.init_from:
        raise PneumoscopeError("--resume continues this run from its own resume checkpoint; --init-from starts a new run from "
                               "another run's weights: use one of them")
    resume_state = None
    if resume and run.has_resume_state():
        resume_state = run.load_resume_state()
        check_resumable(resume_state, cfg)
    info, device = distributed.init(cfg.train.device)
    try:
        skipped = list(skipped or [])
        if cache is None:
            cache, skipped = prepare_data(cfg, info)
        seg_rows = cache.index["has_mask"].to_numpy()
        if not (seg_rows & (cache.index["label"].to_numpy() > 0)).any():
            raise PneumoscopeError(f"{cfg.data.path}: no pneumothorax masks in this data; segmentation training needs them "
                                   "(a labelled folder's normals only add negatives)")
        init_state, split_df = None, None
        if resume_state is not None:
            split_df = run.read_split()
        elif cfg.model.init_from:
            init_state, split_df = _init_from(cfg, cache)
        if split_df is None and preset_split is not None:
            split_df = preset_split
        if split_df is None:
            d = cfg.data
            split_df = make_split(cache.index[seg_rows], d.val_fraction, d.test_fraction, d.split_seed)
        split = split_of_rows(cache, split_df)

        def first_write() -> None:  # the new run replaces the folder's contents only once its first epoch is done
            run.create()
            run.write_split(split_df)
            run.write_config(cfg)
            run.write_skipped(skipped)
            run.clear_derived()

        state = train_segmentation(cfg, cache, split, split_df, run, info, device, resume_state, first_write, init_state)
        metrics: dict = {}
        if info.is_main:
            part = "test" if (split == "test").any() else "val"
            metrics = evaluate_rows(run, cache, np.flatnonzero(split == part), device,
                                    search_rows=np.flatnonzero(split == "val"),
                                    bound=postprocess.area_bound(cache.masks[np.flatnonzero(split == "train")]))
            metrics.update(split=part, encoder=cfg.model.encoder, size=cfg.data.size, epochs_run=state.epoch,
                           best_epoch=state.best_epoch, n_skipped=len(skipped),
                           split_counts=split_summary(split_df).to_dict("records"),
                           warnings=[*state.collapsed, *collapse_warnings(metrics, cfg.model.encoder, part)])
            if state.averaged:
                metrics["averaged"] = state.averaged
            if state.initial_weights:
                metrics["initial_weights"] = state.initial_weights
            run.write_per_image(metrics.pop("per_image"))
            run.write_metrics(metrics)
            from ..model_card import write_model_card

            write_model_card(run)
        return metrics
    finally:
        distributed.cleanup(info)


def _init_from(cfg: Config, cache: Cache) -> tuple[dict, pd.DataFrame | None]:
    """The best weights of ``model.init_from`` (same encoder and head), and its split when it covers
    this data, so that images it tested on stay out of training."""
    src = Run(cfg.model.init_from).require()
    state, saved = src.load_weights()
    for key in ("encoder", "cls_head", "decoder_channels"):
        want = getattr(cfg.model, key)
        if saved["model"][key] != (list(want) if isinstance(want, tuple) else want):
            raise PneumoscopeError(f"--init-from {src.root}: trained with model.{key}={saved['model'][key]}, not {want}; "
                                   f"train with the same (--set model.{key}=...) or use its --config")
    split = src.read_split()
    if split is not None and not split_of_rows(cache, split)[cache.index["has_mask"].to_numpy()].all():
        split = None  # other data: a new split
    return state, split


def check_training_config(cfg: Config) -> None:
    """What training needs beyond a valid config: known names, validation images."""
    canonical_encoder(cfg.model.encoder)
    if cfg.data.layout != "auto" and cfg.data.layout not in LAYOUTS:
        raise PneumoscopeError(f"config key data.layout: unknown layout {cfg.data.layout!r}; choose auto, {', '.join(LAYOUTS)}")
    if cfg.data.val_fraction <= 0:
        raise PneumoscopeError("config key data.val_fraction: 0 is not allowed for training; it must be > 0 "
                               "(early stopping, the LR schedule and the best checkpoint are chosen on validation images)")


def evaluate_seg(run: str | Run, data: str | None = None, split: str = "auto", layout: str = "auto",
                 skip_bad: bool = False, out: str | None = None) -> dict:
    """Evaluate a trained run on a dataset and save the metrics; their path is under ``path``.

    ``split``: ``auto`` (the run's test split when ``data`` is the training data, else
    every image with a mask), ``test``, ``val``, ``train`` or ``all``. The run's own metrics
    file is only rewritten for its own data; metrics of other data go beside it under a name
    that says which data, or to ``out``.
    """
    run = run if isinstance(run, Run) else Run(run)
    cfg = run.read_config()
    trained_on = cfg.data.path  # the run's own (first) data folder
    if out is not None and Path(out).is_dir():
        raise PneumoscopeError(f"--out {out}: is a folder; name the JSON file to write")
    data_cfg = dataclasses.replace(cfg.data, path=data if data else cfg.data.path, layout=layout if data else cfg.data.layout,
                                   extra_paths=() if data else cfg.data.extra_paths,  # other data: exactly that folder
                                   skip_bad=skip_bad or cfg.data.skip_bad)
    cfg = dataclasses.replace(cfg, data=data_cfg)
    cache, skipped = prepare_data(cfg)
    has_mask = cache.index["has_mask"].to_numpy()
    if not has_mask.any():
        raise PneumoscopeError(f"{data}: no masks in this dataset; segmentation metrics need masks")
    split_df = run.read_split()
    part_of = split_of_rows(cache, split_df)
    # the run's own data when every image with a mask is in its split (labelled images without a mask,
    # e.g. a folder's pneumothorax images kept for stage 2, are never in it)
    same_data = split_df is not None and (part_of[has_mask] != "").all()
    if split == "auto":
        split = "test" if same_data and (part_of == "test").any() else "all"
    if split == "all":
        rows = np.flatnonzero(has_mask)
    else:
        if not same_data:
            raise PneumoscopeError(f"--split {split} needs the run's own dataset; use --split all for other data")
        rows = np.flatnonzero(has_mask & (part_of == split))
    if len(rows) == 0:
        raise PneumoscopeError(f"no images with masks in split {split!r}")
    notes = []
    seen = int((part_of[rows] == "train").sum()) if split_df is not None else 0
    if seen:
        notes.append(f"{seen} of these {len(rows)} images are images the run trained on: these numbers are no test of the "
                     "model (--split test, or data it never saw, are)")
    labels = cache.index["label"].to_numpy()
    unmasked = int(((labels == 1) & ~has_mask).sum())
    if unmasked:
        notes.append(f"{unmasked} pneumothorax images without a mask were left out (segmentation metrics need masks; "
                     "evaluate-cls judges them)")
    own_folder = bool(data) and bool(trained_on) and (
        Path(str(data)).expanduser().resolve() == Path(str(trained_on)).expanduser().resolve())
    named = None if not data or (same_data and own_folder) else data  # metrics of other data say which data
    with run.writing("evaluate-seg"):
        return _evaluate_and_save(run, cfg, cache, rows, split, skipped, same_data, named, out, notes)


def _evaluate_and_save(run: Run, cfg: Config, cache: Cache, rows: np.ndarray, split: str, skipped: list,
                       same_data: bool, named: str | None, out: str | None, notes: list[str]) -> dict:
    metrics = evaluate_rows(run, cache, rows)
    metrics.pop("per_image")
    metrics.update(split=split, data=str(cfg.data.path or "synthetic"), encoder=cfg.model.encoder,
                   n_skipped=len(skipped), warnings=notes + collapse_warnings(metrics, cfg.model.encoder, split))
    own = same_data and split == "test" and out is None and named is None  # only the run's own test metrics replace its file
    path = Path(out) if out is not None else run.metrics_path_for(None if named is None else str(named), split)
    metrics["path"] = str(run.write_metrics(metrics, path))
    if own:
        run.write_skipped(skipped)
    return metrics
