"""What stage 2 hands on: its result for the report, and the paper's Table 2 built from its metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.cache import Cache
from .features import FeatureSet

TABLE2_COLUMNS = ["stage", "class", "precision", "precision_lo", "precision_hi", "recall", "recall_lo", "recall_hi",
                  "f1", "f1_lo", "f1_hi", "support"]



@dataclass
class Stage2Result:
    """What the report needs from stage 2."""

    summary: dict  # what the run saves beside the classifier
    table2: pd.DataFrame
    test: FeatureSet  # evaluation images (ids, labels, probability maps)
    p_before: np.ndarray
    p_after: np.ndarray
    cache: Cache  # where the evaluation images live
    test_rows: np.ndarray  # their cache rows


def table2(before: dict, after: dict) -> pd.DataFrame:
    """The paper's Table 2: per-class precision, recall and F1 (with intervals) before and after tuning."""
    rows = []
    for stage, m in (("before tuning", before), ("after tuning", after)):
        for cls in ("normal", "pneumothorax"):
            c, ci = m["per_class"][cls], m.get("ci95", {})
            row = {"stage": stage, "class": cls, "support": c["support"]}
            for k in ("precision", "recall", "f1"):  # each with its 95 % bootstrap interval
                lo, hi = ci.get(f"{cls}.{k}", [float("nan")] * 2)
                row.update({k: c[k], f"{k}_lo": lo, f"{k}_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)
