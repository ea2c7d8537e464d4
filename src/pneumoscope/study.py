"""The whole study of the paper from one config: Table 1, stage 2, Table 2, the report.

``pneumoscope run`` trains a U-Net for every configured encoder on the same split,
evaluates each best checkpoint on the test split (Table 1), picks the best encoder by
validation IoU, trains and evaluates the stage-2 classifier on it (Table 2) and writes
``report.html``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd

from . import config as config_mod
from .config import Config
from .models import canonical_encoder
from .report import write_report
from .runfiles import write_json
from .stage1 import METRIC_KEYS, train_seg
from .stage2.pipeline import train_cls

PP_KEYS = ("iou", "dice_kaggle", "dice_pos")  # also reported after the post-processing rule, suffixed _pp
TABLE1_COLUMNS = ["encoder", *METRIC_KEYS, *(f"{k}_pp" for k in PP_KEYS), "val_iou", "best_epoch", "epochs_run", "seconds"]


def _best_val_iou(run: Path, best_epoch: int) -> float:
    hist = pd.read_csv(run / "history.csv")
    return float(hist.loc[hist.epoch == best_epoch, "val_iou"].iloc[0])


def run_stage1(cfg: Config, out: Path) -> pd.DataFrame:
    """Train and evaluate every encoder of ``cfg.encoders``; returns Table 1."""
    encoders = [canonical_encoder(e) for e in cfg.encoders]
    rows = []
    for enc in encoders:
        ecfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder=enc))
        t0 = time.perf_counter()
        m = train_seg(ecfg, out / "seg" / enc)
        pp = m.get("postprocessed", {})
        rows.append({"encoder": enc, **{k: m[k] for k in METRIC_KEYS}, **{f"{k}_pp": pp.get(k) for k in PP_KEYS},
                     "val_iou": _best_val_iou(out / "seg" / enc, m["best_epoch"]),
                     "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                     "seconds": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def run_study(cfg: Config, out: str | Path) -> dict:
    """Run the study; writes ``config.yaml``, ``seg/<encoder>/``, ``tables/table1.csv`` and
    ``metrics.json`` under ``out`` and returns the metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.yaml")
    table1 = run_stage1(cfg, out)
    (out / "tables").mkdir(exist_ok=True)
    table1.to_csv(out / "tables" / "table1.csv", index=False, float_format="%.4f")
    best = str(table1.sort_values("val_iou", ascending=False).iloc[0]["encoder"])
    res = train_cls(out / "seg" / best)
    res.table2.to_csv(out / "tables" / "table2.csv", index=False, float_format="%.4f")
    metrics = {"table1": table1.to_dict("records"), "best_encoder": best, "best_run": str(out / "seg" / best),
               "stage2": res.summary, "table2": res.table2.to_dict("records")}
    write_json(out / "metrics.json", metrics)
    metrics["report"] = str(write_report(out, cfg, table1, best, res))
    return metrics
