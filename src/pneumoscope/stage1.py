"""Stage 1 from a config: prepare data, split, train, evaluate; the run folder."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from . import config as config_mod
from . import distributed, postprocess
from .config import Config
from .data.cache import Cache, build_cache, default_cache_dir
from .data.dataset import SegDataset
from .data.layouts import index_dataset
from .data.split import make_split
from .data.synth import generate
from .engine import evaluate
from .errors import BadItemError, PneumoscopeError
from .losses import CompositeLoss
from .metrics import SegMetrics
from .models import canonical_encoder
from .postprocess import Rule
from .runfiles import load_model, read_config, write_json, write_skipped
from .train import train_segmentation

METRIC_KEYS = ("loss", "iou", "iou_pos", "dice_kaggle", "dice_pos", "pixel_accuracy")


def synthetic_root(cfg: Config) -> Path:
    """Folder of the embedded synthetic default, generated on first use (deterministic)."""
    d = cfg.data
    base = Path(d.cache_dir) if d.cache_dir else default_cache_dir()
    root = base / f"synth-n{d.synth_n}-s{d.synth_size}-p{d.synth_positive_rate}-seed{d.synth_seed}"
    if not (root / "train.csv").is_file():
        tmp = root.with_name(root.name + ".tmp")
        generate(tmp, d.synth_n, d.synth_size, d.synth_seed, d.synth_positive_rate)
        tmp.rename(root)
    return root


def prepare_data(cfg: Config, info: distributed.DistInfo | None = None) -> tuple[Cache, list[BadItemError]]:
    """Index and cache the configured dataset (rank 0 builds, the others wait and open)."""
    info = info or distributed.DistInfo()
    d = cfg.data
    root = Path(d.path) if d.path else None
    if root is None:
        if info.is_main:
            synthetic_root(cfg)
        distributed.barrier(info)
        root = synthetic_root(cfg)
    index, bad = index_dataset(root, d.layout, d.skip_bad)
    cache = None
    if info.is_main:
        cache = build_cache(index, d.size, d.cache_dir, d.skip_bad, progress=cfg.train.progress and sys.stderr.isatty())
    distributed.barrier(info)
    if cache is None:
        cache = build_cache(index, d.size, d.cache_dir, d.skip_bad)
    return cache, bad + cache.skipped


DERIVED = ("model.onnx", "export.json", "backend.json", "postprocess.json", "stage2")


def clear_derived(run: Path) -> list[str]:
    """Remove what was derived from earlier weights (ONNX export, backend choice, post-processing
    rule, stage-2 classifier), so that nothing stale outlives new training in the same folder."""
    import shutil

    gone = []
    for name in DERIVED:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        gone.append(name)
    return gone


def train_seg(cfg: Config, out: str | Path, resume: bool = False) -> dict:
    """Train one U-Net as configured, then evaluate its best checkpoint on the test split.

    Writes ``config.yaml``, ``split.csv``, ``history.csv``, ``best.pt``, ``last.pt``,
    ``metrics.json`` (and ``skipped.csv`` when items were skipped) under ``out``.
    """
    canonical_encoder(cfg.model.encoder)  # fail on a bad name before any data work
    info, device = distributed.init(cfg.train.device)
    out = Path(out)
    try:
        cache, skipped = prepare_data(cfg, info)
        seg_rows = cache.index["has_mask"].to_numpy()
        if not seg_rows.any():
            raise PneumoscopeError(f"{cfg.data.path}: no masks in this dataset; segmentation training needs masks")
        split_file = out / "split.csv"
        if resume and split_file.is_file():
            split_df = pd.read_csv(split_file, dtype={"id": str, "patient_id": str}, keep_default_na=False)
        else:
            d = cfg.data
            split_df = make_split(cache.index[seg_rows], d.val_fraction, d.test_fraction, d.split_seed)
        split = cache.index["id"].map(dict(zip(split_df["id"], split_df["split"]))).fillna("").to_numpy()
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            clear_derived(out)
            config_mod.save(cfg, out / "config.yaml")
            split_df.to_csv(split_file, index=False)
            write_skipped(out, skipped)
        distributed.barrier(info)
        state = train_segmentation(cfg, cache, split, out, info, device, resume)
        metrics: dict = {}
        if info.is_main:
            part = "test" if (split == "test").any() else "val"
            metrics = evaluate_rows(out, cache, np.flatnonzero(split == part), device,
                                    search_rows=np.flatnonzero(split == "val"))
            metrics.update(split=part, encoder=cfg.model.encoder, size=cfg.data.size, epochs_run=state.epoch,
                           best_epoch=state.best_epoch, n_skipped=len(skipped))
            write_json(out / "metrics.json", metrics)
        return metrics
    finally:
        distributed.cleanup(info)


def _evaluate_probs(model: torch.nn.Module, cfg: Config, cache: Cache, rows: np.ndarray,
                    device: torch.device) -> tuple[dict, np.ndarray]:
    dl = DataLoader(SegDataset(cache, rows), batch_size=cfg.train.batch_size, shuffle=False)
    probs: list[np.ndarray] = []
    acc = evaluate(model, dl, CompositeLoss(cfg.loss), device, cfg.train.threshold, collect=probs)
    return acc.compute(), np.concatenate(probs)


def evaluate_rows(run: Path, cache: Cache, rows: np.ndarray, device: torch.device | None = None,
                  search_rows: np.ndarray | None = None) -> dict:
    """Metrics of a run's best checkpoint over some cache rows.

    With ``search_rows`` (validation rows), first searches the post-processing triplet on them
    and saves ``RUN/postprocess.json``. When the run has a rule, the metrics with it are added
    under ``postprocessed``."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = load_model(run, device)
    rule_file = run / "postprocess.json"
    if search_rows is not None and len(search_rows):
        _, val_probs = _evaluate_probs(model, cfg, cache, search_rows, device)
        rule, score, plain = postprocess.search(val_probs, np.asarray(cache.masks[search_rows]))
        rule.save(rule_file, score, plain)
    metrics, probs = _evaluate_probs(model, cfg, cache, rows, device)
    if rule_file.is_file():
        rule = Rule.load(rule_file)
        acc = SegMetrics()
        acc.update(rule.apply(probs), np.asarray(cache.masks[rows]))
        pp = acc.compute()
        pp.pop("loss")
        metrics["postprocessed"] = {**pp, "rule": dataclasses.asdict(rule)}
    return metrics


def evaluate_seg(run: str | Path, data: str | None = None, split: str = "auto", layout: str = "auto",
                 skip_bad: bool = False) -> dict:
    """Evaluate a trained run on a dataset; writes ``metrics.json`` in the run folder.

    ``split``: ``auto`` (the run's test split when ``data`` is the training data, else
    every image with a mask), ``test``, ``val``, ``train`` or ``all``.
    """
    run = Path(run)
    cfg = read_config(run)
    data_cfg = dataclasses.replace(cfg.data, path=data if data else cfg.data.path, layout=layout if data else cfg.data.layout,
                                   skip_bad=skip_bad or cfg.data.skip_bad)
    cfg = dataclasses.replace(cfg, data=data_cfg, train=dataclasses.replace(cfg.train, progress=sys.stderr.isatty()))
    cache, skipped = prepare_data(cfg)
    has_mask = cache.index["has_mask"].to_numpy()
    if not has_mask.any():
        raise PneumoscopeError(f"{data}: no masks in this dataset; segmentation metrics need masks")
    split_df = pd.read_csv(run / "split.csv", dtype={"id": str}, keep_default_na=False) if (run / "split.csv").is_file() else None
    part_of = cache.index["id"].map(dict(zip(split_df["id"], split_df["split"]))) if split_df is not None else None
    same_data = part_of is not None and part_of.notna().all()
    if split == "auto":
        split = "test" if same_data and (part_of == "test").any() else "all"
    if split == "all":
        rows = np.flatnonzero(has_mask)
    else:
        if not same_data:
            raise PneumoscopeError(f"--split {split} needs the run's own dataset; use --split all for other data")
        rows = np.flatnonzero(has_mask & (part_of == split).to_numpy())
    if len(rows) == 0:
        raise PneumoscopeError(f"no images with masks in split {split!r}")
    metrics = evaluate_rows(run, cache, rows)
    metrics.update(split=split, data=str(cfg.data.path or "synthetic"), encoder=cfg.model.encoder,
                   n_skipped=len(skipped))
    write_json(run / "metrics.json", metrics)
    write_skipped(run, skipped)
    return metrics
