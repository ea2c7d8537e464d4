"""Stage 2 on trained stage-1 runs: the no-leakage rule and the real NIH classification set."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pneumoscope import config
from pneumoscope.cli import main
from pneumoscope.folders import Run
from pneumoscope.stage2.pipeline import classification_sets, train_cls
from tests.conftest import shared_path
from tests.helpers import FAST


def _train_ids(run):
    return Run(run).training_ids()


def read_config(run):
    return Run(run).read_config()


def test_default_sets_are_stage1_val_and_test(seg_run):
    cfg = read_config(seg_run)
    cache, fit_rows, test_rows, note = classification_sets(cfg, Run(seg_run))
    split = pd.read_csv(seg_run / "split.csv", dtype={"id": str}).set_index("id").split
    assert set(split[cache.index.id.iloc[fit_rows]]) == {"val"}
    assert set(split[cache.index.id.iloc[test_rows]]) == {"test"}
    assert "never trained on" in note


def test_separate_dataset_drops_segmentation_training_images(seg_run, tiny_synth):
    base = config.to_dict(read_config(seg_run))
    base["stage2"]["data"] = str(tiny_synth)  # the same images: the training ones must go
    cfg = config.from_dict(base)
    cache, fit_rows, test_rows, note = classification_sets(cfg, Run(seg_run))
    used = set(cache.index.id.iloc[np.concatenate([fit_rows, test_rows])])
    assert used and not used & _train_ids(seg_run)
    assert len(used) == 24 - len(_train_ids(seg_run)) and not set(fit_rows) & set(test_rows)
    assert f"{len(_train_ids(seg_run))} images that the segmentation model trained on were excluded" in note


@pytest.mark.slow
def test_train_cls_cli_and_predict_with_probability(seg_run, tiny_synth, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(seg_run, run)  # the shared run stays without a classifier
    seg_run = run
    assert main(["train-cls", "--run", str(seg_run), "--data", str(tiny_synth), "--set", "stage2.n_iter=2",
                 "--set", "stage2.cv_folds=2", "--set", "stage2.test_fraction=0.5"]) == 0
    out = capsys.readouterr().out
    assert "before tuning normal" in out and "excluded" in out
    summary = json.loads((seg_run / "stage2" / "stage2.json").read_text())
    assert summary["feature_extractor"] == "seg-encoder" and 0 <= summary["threshold"] <= 1
    t2 = pd.read_csv(seg_run / "stage2" / "table2.csv")
    assert t2[["stage", "class"]].values.tolist() == [["before tuning", "normal"], ["before tuning", "pneumothorax"],
                                                      ["after tuning", "normal"], ["after tuning", "pneumothorax"]]
    assert main(["predict", "--run", str(seg_run), str(tiny_synth / "png_images"), "--out", str(tmp_path / "p")]) == 0
    pred = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert pred.p_pneumothorax.between(0, 1).all() and set(pred.decision) <= {"normal", "pneumothorax"}
    assert ((pred.p_pneumothorax >= summary["threshold"]) == (pred.decision == "pneumothorax")).all()


@pytest.mark.slow
def test_real_siim_stage1_and_nih_stage2(tmp_path):
    siim, nih = shared_path("siim-sample"), shared_path("nih-sample")
    run = tmp_path / "real"
    assert main(["train-seg", "--data", str(siim), "--out", str(run), "--epochs", "1", *FAST]) == 0
    res = train_cls(run, config.from_dict({**config.to_dict(read_config(run)),
                                           "stage2": {"data": str(nih), "n_iter": 2, "cv_folds": 3}}))
    assert res.summary["n_fit"] + res.summary["n_eval"] == 90
    assert res.summary["n_eval"] == 36 and res.test.labels.sum() == 12
    assert 0 <= res.summary["after"]["roc_auc"] <= 1
