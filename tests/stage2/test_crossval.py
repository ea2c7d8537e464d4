"""Stage 2 of a cross-validated run (stage2/crossval.py): fitted, thresholded and judged out of fold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumoscope.cli import main
from pneumoscope.data.cache import Cache
from pneumoscope.folders import Run
from pneumoscope.stage2.crossval import image_folds, is_cross_validated


def test_image_folds_follow_the_run_split(fold_run: Path) -> None:
    run = Run(fold_run)
    assert is_cross_validated(run)
    cfg = run.read_config()
    from pneumoscope.data.prepare import prepare_data

    cache, _ = prepare_data(cfg)
    assert isinstance(cache, Cache)
    rows, fold = image_folds(run, cache, 3, 0)
    split = pd.read_csv(fold_run / "split.csv", dtype={"id": str}).set_index("id")["fold"]
    ids = cache.index["id"].astype(str).iloc[rows]
    assert (split.loc[ids].to_numpy() == fold).all(), "an image's stage-2 fold is its stage-1 fold"
    assert sorted(np.unique(fold)) == [0, 1, 2]


@pytest.mark.slow
def test_train_cls_on_a_fold_run_is_out_of_fold(fold_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(fold_run, run)  # the shared run stays without a classifier
    assert main(["train-cls", "--run", str(run), "--set", "stage2.n_iter=2", "--set", "stage2.cv_folds=2"]) == 0
    summary = json.loads((run / "stage2" / "stage2.json").read_text())
    assert summary["evaluated_on"] == "out-of-fold" and summary["folds"] == 3
    assert summary["n_eval"] == 24, "every labelled image is decided once, by a classifier that never saw it"
    assert all(0.0 <= t <= 1.0 for t in summary["fold_thresholds"])
    assert "out of fold" in summary["leakage"]
    t2 = pd.read_csv(run / "stage2" / "table2.csv")
    assert len(t2) == 4
    assert "before tuning" in capsys.readouterr().out
