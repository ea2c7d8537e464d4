"""Train / validation / test split: stratified by label, grouped by patient where known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import PneumoscopeError

SPLITS = ("train", "val", "test")


def _take(groups: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split groups so that ``fraction`` of them go to the second part (at least one)."""
    from sklearn.model_selection import train_test_split

    n_take = max(1, int(round(fraction * len(groups))))
    if n_take >= len(groups):
        raise PneumoscopeError(f"too few images ({len(groups)} groups) for the requested split fractions")
    counts = groups["label"].value_counts()
    stratify = groups["label"] if counts.min() >= 2 and n_take >= counts.size else None
    return train_test_split(groups, test_size=n_take, random_state=seed, stratify=stratify)


def split_summary(split: pd.DataFrame) -> pd.DataFrame:
    """How many images of each source and label went to each part (rows: source and label)."""
    df = split.assign(source=split["source"] if "source" in split else "data",
                      kind=np.where(split["label"] > 0, "pneumothorax", "normal"))
    table = df.pivot_table(index=["source", "kind"], columns="split", values="id", aggfunc="count", fill_value=0)
    return table.reindex(columns=[c for c in SPLITS if c in table.columns]).reset_index()


def make_split(index: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int = 0) -> pd.DataFrame:
    """Assign each image to train/val/test; returns ``id, patient_id, label, split``.

    Images of one patient stay together; where the patient is unknown each image is its
    own group. A fraction of 0 leaves that part empty.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise PneumoscopeError("split fractions must be >= 0 and sum to less than 1")
    df = index[["id", "patient_id", "label", *(["source"] if "source" in index else [])]].copy()
    df["group"] = np.where(df["patient_id"].astype(str) != "", "p:" + df["patient_id"].astype(str), "i:" + df["id"])
    groups = df.groupby("group", sort=True)["label"].max().reset_index()
    split_of: dict[str, str] = {}
    rest = groups
    if test_fraction > 0:
        rest, test = _take(rest, test_fraction, seed)
        split_of.update(dict.fromkeys(test["group"], "test"))
    if val_fraction > 0:
        rest, val = _take(rest, val_fraction / (1 - test_fraction), seed + 1)
        split_of.update(dict.fromkeys(val["group"], "val"))
    split_of.update(dict.fromkeys(rest["group"], "train"))
    df["split"] = df["group"].map(split_of)
    return df.drop(columns="group")
