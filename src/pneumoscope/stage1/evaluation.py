"""Stage-1 evaluation of a model's probability maps: the metrics, their intervals, per image,
per source and per size of finding, and the post-processing rule's effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..config import Config
from ..data.cache import Cache
from ..data.dataset import SegDataset
from ..device import resolve_device
from ..folders import Run
from . import postprocess
from .engine import evaluate
from .losses import CompositeLoss
from .metrics import SegMetrics, empty_baseline, intervals_of, metrics_of, per_image_counts, per_size, per_source
from .unet import load_model


def collapse_warnings(metrics: dict, encoder: str, part: str) -> list[str]:
    """A line when the evaluated model predicts an empty mask on every positive image."""
    if metrics.get("pos_empty") == 1.0:
        return [f"[{encoder}] collapse: every {part} positive ({metrics['n_positive']}) is predicted empty; the model "
                "draws nothing (its dice_kaggle counts only the empty normals)"]
    return []


def evaluate_probs(model: torch.nn.Module, cfg: Config, cache: Cache, rows: np.ndarray,
                    device: torch.device) -> tuple[dict, np.ndarray]:
    """The accumulated metrics and the probability maps of ``model`` over cache ``rows``."""
    dl = DataLoader(SegDataset(cache, rows), batch_size=cfg.train.batch_size, shuffle=False)
    probs: list[np.ndarray] = []
    acc = evaluate(model, dl, CompositeLoss(cfg.loss), device, cfg.train.threshold, collect=probs)
    return acc.compute(), np.concatenate(probs)


def evaluate_rows(run: Run, cache: Cache, rows: np.ndarray, device: torch.device | None = None,
                  search_rows: np.ndarray | None = None, bound: float | None = None) -> dict:
    """Metrics of a run's best checkpoint over some cache rows.

    With ``search_rows`` (validation rows), first searches the post-processing triplet on them
    (its minimum area held under ``bound``, see :func:`.postprocess.area_bound`) and saves it in the
    run. When the run has a rule, the metrics with it are added under ``postprocessed``."""
    device = device or resolve_device("auto")
    model, cfg = load_model(run, device)
    if search_rows is not None and len(search_rows):
        _, val_probs = evaluate_probs(model, cfg, cache, search_rows, device)
        rule, score, plain = postprocess.search(val_probs, np.asarray(cache.masks[search_rows]), cfg.train.rule_objective,
                                                bound)
        postprocess.save_rule(run, rule, score, plain, cfg.train.rule_objective, bound)
    metrics, probs = evaluate_probs(model, cfg, cache, rows, device)
    return metrics_of_probs(run, cfg, cache, rows, probs, metrics)


def metrics_of_probs(run: Run, cfg: Config, cache: Cache, rows: np.ndarray, probs: np.ndarray, metrics: dict,
                     kept: np.ndarray | None = None, rule_info: dict | None = None) -> dict:
    """Every stage-1 number of probability maps ``probs`` of cache ``rows`` (added to ``metrics``, the
    accumulated ones): estimates, patient-bootstrap intervals, per image, per source, per size of
    finding, and post-processed under ``postprocessed``: ``kept`` (the masks a rule left, described by
    ``rule_info``), else with the run's own rule when it has one."""
    truths = np.asarray(cache.masks[rows])
    patients = cache.index["patient_id"].iloc[rows].tolist() if "patient_id" in cache.index else None
    sources = cache.index["source"].iloc[rows].tolist() if "source" in cache.index else [""] * len(rows)
    counts = per_image_counts(probs > cfg.train.threshold, truths)  # one pass over the masks; every number below from it
    metrics.update(metrics_of(counts, np.arange(len(rows))))  # the estimates from the numbers their intervals resample
    metrics.update(intervals_of(counts, patients))
    metrics["per_image"] = pd.DataFrame({"id": cache.index["id"].iloc[rows].astype(str).to_numpy(),
                                         "patient_id": [str(p) for p in patients] if patients is not None else "", **counts})
    by_source = per_source(counts, patients, sources)  # several collections: does one of them carry the score?
    if by_source:
        metrics["per_source"] = by_source
    metrics["per_size"] = per_size(counts, patients)
    metrics["empty_baseline"] = empty_baseline(counts)
    rule = postprocess.load_rule(run) if kept is None else None
    if rule is not None:
        kept, rule_info = rule.apply(probs), rule.to_dict()
    if kept is not None:
        acc = SegMetrics()
        acc.update(kept, truths)
        pp = acc.compute()
        pp.pop("loss")
        kept_counts = per_image_counts(kept, truths)
        metrics["postprocessed"] = {**pp, "rule": rule_info, "ci95": intervals_of(kept_counts, patients)["ci95"]}
        if by_source:  # what the rule does to each collection (e.g. empties the normals)
            metrics["postprocessed"]["per_source"] = per_source(kept_counts, patients, sources)
        metrics["postprocessed"]["per_size"] = per_size(kept_counts, patients)
    return metrics
