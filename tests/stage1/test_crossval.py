"""Cross-validated stage 1 (stage1/crossval.py): K fold models, out-of-fold metrics, the ensemble."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from pneumoscope.cli import main


def test_fold_run_reports_out_of_fold_metrics(fold_run: Path) -> None:
    metrics = json.loads((fold_run / "metrics.json").read_text())
    assert metrics["split"] == "out-of-fold"
    assert len(metrics["per_fold"]) == 3
    assert metrics["n_images"] == 24, "every image is judged once, by the model that never saw it"
    assert set(metrics["per_size"]) >= {"< 0.5 %", "0.5-2 %", "> 2 %", "negatives"}
    assert 0.0 <= metrics["empty_baseline"] <= 1.0
    per_image = pd.read_csv(fold_run / "per_image.csv")
    assert sorted(per_image["fold"].unique()) == [0, 1, 2]
    split = pd.read_csv(fold_run / "split.csv")
    patients = split["patient_id"].astype(object).fillna(split["id"]).astype(str)
    assert split.groupby(patients)["fold"].nunique().max() == 1
    for k in range(3):
        member = fold_run / "folds" / f"fold-{k}"
        assert (member / "best.safetensors").exists()
        msplit = pd.read_csv(member / "split.csv")
        test_ids = set(msplit.loc[msplit["split"] == "test", "id"])
        assert test_ids == set(split.loc[split["fold"] == k, "id"].astype(str))


def test_fold_rule_respects_the_area_bound(fold_run: Path) -> None:
    rule = json.loads((fold_run / "postprocess.json").read_text())
    if rule.get("min_area_bound") is not None:
        assert rule["min_area"] <= rule["min_area_bound"] + 1e-12


def test_resume_keeps_finished_folds(fold_run: Path, tiny_synth: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(fold_run, run)
    stamps = {k: os.stat(run / "folds" / f"fold-{k}" / "best.safetensors").st_mtime_ns for k in range(3)}
    shutil.rmtree(run / "folds" / "fold-2")
    args = ["train-seg", "--data", str(tiny_synth), "--out", str(run), "--encoder", "resnet18", "--size", "64",
            "--batch-size", "8", "--epochs", "1", "--set", "train.progress=false", "--set", "data.val_fraction=0.25",
            "--set", "data.test_fraction=0.25", "--folds", "3", "--resume"]
    assert main(args) == 0
    for k in (0, 1):
        assert os.stat(run / "folds" / f"fold-{k}" / "best.safetensors").st_mtime_ns == stamps[k]
    assert (run / "folds" / "fold-2" / "best.safetensors").exists()


def test_predict_with_the_ensemble_and_with_one_fold(fold_run: Path, tiny_synth: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    image = next(p for p in sorted(tiny_synth.rglob("*.png")) if "mask" not in str(p).lower())
    assert main(["predict", "--run", str(fold_run), str(image), "--out", str(tmp_path / "ens"),
                 "--precision", "fp32"]) == 0
    assert "fold ensemble" in capsys.readouterr().out
    assert main(["predict", "--run", str(fold_run), "--fold", "1", str(image),
                 "--out", str(tmp_path / "one"), "--precision", "fp32"]) == 0
    assert "fold ensemble" not in capsys.readouterr().out


@pytest.mark.parametrize("flag", [["--fold", "7"], ["--fold", "-1"]], ids=["past the last", "negative"])
def test_unknown_fold_is_one_line(fold_run: Path, flag: list[str], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate-seg", "--run", str(fold_run), *flag])
    err = capsys.readouterr().err
    assert code != 0
    assert "fold" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
