"""Cross-validation folds: patient-grouped, stratified by source and label.

Every labelled image with a mask lands in exactly one fold; the images of one patient stay in one
fold; each fold holds about the same share of each (source, label) stratum (e.g. SIIM positives,
SIIM negatives, NIH normals), so that no fold is judged on one collection only. A fold's model
trains on the other folds (a validation part carved from them chooses its epoch) and predicts its
own fold: those out-of-fold predictions cover every image exactly once.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import PneumoscopeError
from .split import make_split


def _groups(index: pd.DataFrame) -> np.ndarray:
    pid = index["patient_id"].astype(str).to_numpy() if "patient_id" in index else np.full(len(index), "")
    return np.where(pid != "", np.char.add("p:", pid.astype(str)), np.char.add("i:", index["id"].astype(str).to_numpy()))


def make_folds(index: pd.DataFrame, k: int, seed: int = 0) -> pd.DataFrame:
    """``id, patient_id, label, source, fold`` (fold 0..k-1) of every row of ``index``.

    Stratified by (source, label) over patient groups (scikit-learn's StratifiedGroupKFold, shuffled
    with ``seed``). Refused with one line when there are fewer patients, or fewer positive patients,
    than folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    if k < 2:
        raise PneumoscopeError(f"--folds {k}: cross-validation needs at least 2 folds")
    df = index[["id", "patient_id", "label", *(["source"] if "source" in index else [])]].copy()
    if "source" not in df:
        df["source"] = "data"
    df = df.reset_index(drop=True)
    groups = _groups(df)
    positive = df["label"].to_numpy() > 0
    n_groups, n_pos = len(set(groups)), len(set(groups[positive]))
    if n_groups < k or n_pos < k:
        raise PneumoscopeError(f"--folds {k}: {n_groups} patients ({n_pos} with a pneumothorax) cannot fill {k} folds; "
                               "every fold needs positive images (fewer folds, or more data)")
    strata = (df["source"].astype(str) + "|" + np.where(positive, "pos", "neg")).to_numpy()
    with warnings.catch_warnings():  # "the least populated class has only n members": still the best spread there is
        warnings.simplefilter("ignore", UserWarning)
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        fold = np.full(len(df), -1)
        for f, (_, test) in enumerate(cv.split(np.zeros(len(df)), strata, groups)):
            fold[test] = f
    df["fold"] = fold
    return df


def fold_split(folds: pd.DataFrame, k: int, val_fraction: float, seed: int = 0) -> pd.DataFrame:
    """The split of fold ``k``'s model: its fold is ``test``; the other folds are split into ``train``
    and ``val`` (``val_fraction`` of them, patient-grouped and stratified by label)."""
    rest = folds[folds["fold"] != k]
    inner = make_split(rest, val_fraction, 0.0, seed + k)
    test = folds[folds["fold"] == k][inner.columns.drop("split")].assign(split="test")
    out = pd.concat([inner, test], ignore_index=True)
    return out.set_index("id").loc[folds["id"]].reset_index()[inner.columns]


def ensemble_split(folds: pd.DataFrame) -> pd.DataFrame:
    """The split of the fold ensemble: every image trained one of its members, so every image is
    ``train`` (evaluations on this data say so); ``fold`` says which member never saw it."""
    cols = ["id", "patient_id", "label", *(["source"] if "source" in folds else []), "fold"]
    return folds[cols].assign(split="train")[[*cols[:-1], "split", "fold"]]
