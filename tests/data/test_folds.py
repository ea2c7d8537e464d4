"""Patient-grouped, stratified folds for cross-validation (data/folds.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from pneumoscope.data.folds import ensemble_split, fold_split, make_folds
from pneumoscope.errors import PneumoscopeError


def _index(n_patients: int = 30, per_patient: int = 2) -> pd.DataFrame:
    rows = []
    for p in range(n_patients):
        for j in range(per_patient):
            rows.append({"id": f"p{p}-{j}", "patient_id": f"p{p}", "label": int(p % 3 == 0),
                         "source": "a" if p < n_patients // 2 else "b"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_are_patient_disjoint_and_stratified(k: int) -> None:
    idx = _index()
    folds = make_folds(idx, k, seed=1)
    assert list(folds["id"]) == list(idx["id"])
    assert sorted(folds["fold"].unique()) == list(range(k))
    assert folds.groupby("patient_id")["fold"].nunique().max() == 1
    for _, f in folds.groupby("fold"):
        assert f["label"].sum() >= 1, "every fold holds positives"
        assert set(f["source"]) == {"a", "b"}, "every fold holds every source"


def test_folds_are_reproducible_by_seed() -> None:
    idx = _index()
    assert make_folds(idx, 3, 4)["fold"].tolist() == make_folds(idx, 3, 4)["fold"].tolist()


@pytest.mark.parametrize(("index", "k", "needle"), [
    (_index(n_patients=2), 3, "patients"),
    (_index().assign(label=0), 3, "positive"),
    (_index(), 1, "at least 2"),
], ids=["too few patients", "no positives", "one fold"])
def test_folds_refused_with_one_line(index: pd.DataFrame, k: int, needle: str) -> None:
    with pytest.raises(PneumoscopeError, match=needle):
        make_folds(index, k)


def test_fold_split_tests_on_its_fold_only() -> None:
    folds = make_folds(_index(), 3)
    for k in range(3):
        split = fold_split(folds, k, 0.2, seed=0)
        assert list(split["id"]) == list(folds["id"])
        test = set(split.loc[split["split"] == "test", "id"])
        assert test == set(folds.loc[folds["fold"] == k, "id"])
        seen = split[split["split"] != "test"]
        assert set(seen["split"]) == {"train", "val"}
        assert not set(seen["patient_id"]) & set(split.loc[split["split"] == "test", "patient_id"])


def test_ensemble_split_marks_every_image_train_with_its_fold() -> None:
    folds = make_folds(_index(), 3)
    split = ensemble_split(folds)
    assert set(split["split"]) == {"train"}
    assert split["fold"].tolist() == folds["fold"].tolist()
