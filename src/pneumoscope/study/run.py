"""The whole study of the paper from one config: Table 1, stage 2, Table 2, the report.

``pneumoscope run`` trains a U-Net for every configured encoder on the same split,
evaluates each best checkpoint on the test split (Table 1), picks the best encoder by
validation IoU, trains and evaluates the stage-2 classifier on it (Table 2) and writes
the HTML report.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd

from .. import locks
from ..config import Config
from ..data.cache import Cache
from ..data.prepare import prepare_data
from ..files import check_writable_folder
from ..folders import Run, Study
from ..model_card import write_model_card
from ..stage1.metrics import CI_KEYS
from ..stage1.pipeline import METRIC_KEYS, train_seg
from ..stage1.unet import canonical_encoder
from ..stage2.pipeline import train_cls
from ..stats import too_wide
from .report import write_report

PP_KEYS = ("iou", "dice_kaggle", "dice_pos")  # also reported after the post-processing rule, suffixed _pp
TABLE1_COLUMNS = ["encoder", "loss", *(f"{k}{s}" for k in CI_KEYS for s in ("", "_lo", "_hi")), *(f"{k}_pp" for k in PP_KEYS),
                  "n_images", "n_positive", "n_patients", "val_iou", "best_epoch", "epochs_run", "seconds"]


def _best_val_iou(run: Run, best_epoch: int) -> float:
    hist = run.read_history()
    return float(hist.loc[hist.epoch == best_epoch, "val_iou"].iloc[0])


def _val_and_epochs(run: Run, m: dict) -> tuple[float, int, int]:
    """Best validation IoU, best epoch and epochs run; of a fold ensemble: the folds' mean IoU, their
    median best epoch and their epochs together."""
    if not m.get("folds"):
        return _best_val_iou(run, m["best_epoch"]), m["best_epoch"], m["epochs_run"]
    import numpy as np

    from ..folders import fold_folder

    folds = m["per_fold"]
    ious = [_best_val_iou(Run(fold_folder(run.root, f["fold"])), f["best_epoch"]) for f in folds]
    return float(np.mean(ious)), int(np.median([f["best_epoch"] for f in folds])), int(sum(f["epochs_run"] for f in folds))


def run_stage1(cfg: Config, study: Study, cache: Cache | None = None, skipped: list | None = None) -> pd.DataFrame:
    """Train and evaluate every encoder of ``cfg.encoders``; returns Table 1."""
    encoders = [canonical_encoder(e) for e in cfg.encoders]
    rows = []
    for enc in encoders:
        ecfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder=enc))
        t0 = time.perf_counter()
        run = study.seg_run(enc)
        m = train_seg(ecfg, run, cache=cache, skipped=skipped)
        pp = m.get("postprocessed", {})
        ci = m.get("ci95", {})
        val_iou, best_epoch, epochs_run = _val_and_epochs(run, m)
        rows.append({"encoder": enc, **{k: m[k] for k in METRIC_KEYS}, **{f"{k}_pp": pp.get(k) for k in PP_KEYS},
                     **{f"{k}_{e}": ci.get(k, [float("nan")] * 2)[i] for k in CI_KEYS for i, e in enumerate(("lo", "hi"))},
                     "n_images": m["n_images"], "n_positive": m["n_positive"], "n_patients": m.get("n_patients"),
                     "val_iou": val_iou, "best_epoch": best_epoch, "epochs_run": epochs_run,
                     "seconds": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def encoder_comparisons(study: Study, table1: pd.DataFrame, best: str) -> list[dict]:
    """Each other encoder minus the best one on the same test images: paired bootstrap differences
    (patients resampled) of dice_pos, dice_kaggle and iou, so a reader can tell a difference from noise."""
    import numpy as np

    from ..stage1.metrics import metrics_of
    from ..stats import Resampler, paired

    ref = study.seg_run(best).read_per_image()
    if ref is None:
        return []
    fields = ["inter", "union", "correct", "pixels", "dice", "iou", "pos"]
    as_counts = lambda t: {k: t[k].to_numpy().astype(bool if k == "pos" else float) for k in fields}  # noqa: E731
    out = []
    for enc in table1.encoder:
        other = study.seg_run(enc).read_per_image()
        if enc == best or other is None or list(other["id"]) != list(ref["id"]):
            continue
        a, b = as_counts(ref), as_counts(other)
        resampler = Resampler.over(ref["patient_id"].tolist(), len(ref))
        diff = paired(lambda idx, a=a: metrics_of(a, idx), lambda idx, b=b: metrics_of(b, idx), resampler, len(ref))
        for k in ("dice_pos", "dice_kaggle", "iou"):
            d = diff[k]
            if d["difference"] == d["difference"]:
                lo, hi = d["ci95"]
                out.append({"encoder": enc, "minus": best, "metric": k, "difference": d["difference"], "ci95": [lo, hi],
                            "clear": bool(np.isfinite(lo) and (lo > 0 or hi < 0))})
    return out


def study_notes(study: Study, table1: pd.DataFrame, s2: dict) -> tuple[list[str], list[str]]:
    """What a reader must be told beside Table 1 (collapses, too few positives) and beside Table 2
    (too few positives, a learnable source)."""
    seg = [line for e in table1.encoder for line in study.seg_run(e).read_metrics().get("warnings", [])]
    if len(table1) and too_wide(int(table1.n_positive.iloc[0])):
        seg.append(f"Table 1 {too_wide(int(table1.n_positive.iloc[0]))}")
    cls = []
    if "n_positive" in s2["after"] and too_wide(s2["after"]["n_positive"]):
        cls.append(f"Table 2 {too_wide(s2['after']['n_positive'])}")
    if s2.get("source_check", {}).get("warning"):
        cls.append(s2["source_check"]["warning"])
    return seg, cls


def run_study(cfg: Config, out: str | Path) -> dict:
    """Run the study into the folder ``out``: a run per encoder, Table 1, stage 2 on the best
    encoder, Table 2, metrics and the report. Returns the metrics."""
    for enc in cfg.encoders:
        canonical_encoder(enc)  # fail on a bad name before any work
    study = Study(out)
    check_writable_folder(study.root)
    study.check_data(cfg)
    with locks.hold(study.root, "run"):
        return _run_study(cfg, study)


def _run_study(cfg: Config, study: Study) -> dict:
    cache, skipped = prepare_data(cfg)  # indexed and cached once for every encoder and stage 2
    study.create()
    study.write_config(cfg)
    table1 = run_stage1(cfg, study, cache, skipped)
    study.write_table("table1", table1)
    best = str(table1.sort_values("val_iou", ascending=False).iloc[0]["encoder"])
    best_run = study.seg_run(best)
    res = train_cls(best_run, cache=cache if cfg.stage2.data is None else None)
    study.write_table("table2", res.table2)
    seg_notes, cls_notes = study_notes(study, table1, res.summary)
    comparisons = encoder_comparisons(study, table1, best)
    metrics = {"table1": table1.to_dict("records"), "best_encoder": best, "best_run": str(best_run.root),
               "best_metrics": best_run.read_metrics(),
               "stage2": res.summary, "table2": res.table2.to_dict("records"), "notes": seg_notes + cls_notes,
               "encoder_vs_best": comparisons}
    study.write_metrics(metrics)
    write_model_card(best_run, study.model_card_path)  # the study's model: its best run, with stage 2
    metrics["report"] = str(write_report(study, cfg, table1, best, res, (seg_notes, cls_notes), comparisons))
    return metrics
