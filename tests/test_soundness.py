"""A classifier no better than chance is said wherever its numbers appear, and tuning never keeps a
threshold that calls every image one class (issue 25)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pneumoscope import soundness
from pneumoscope.cli import main
from pneumoscope.cli.tables import print_table2
from pneumoscope.stage2 import classifier as clf
from tests.helpers import labelled_folder


def metrics(auc, lo, hi, sens, spec, n_pos=10, n_neg=10, t=0.5):
    return {"roc_auc": auc, "ci95": {"roc_auc": [lo, hi]}, "sensitivity": sens, "specificity": spec, "threshold": t,
            "per_class": {"normal": {"support": n_neg}, "pneumothorax": {"support": n_pos}}}


# One row per sign: the metrics, and the words the warning must hold (None: no warning).
CASES = [
    ("good classifier", metrics(0.90, 0.80, 0.97, 0.8, 0.9), []),
    ("interval contains 0.5", metrics(0.62, 0.41, 0.80, 0.6, 0.6), ["contains 0.5"]),
    ("interval touches 0.5", metrics(0.70, 0.50, 0.85, 0.6, 0.6), ["contains 0.5"]),
    ("below chance", metrics(0.20, 0.05, 0.40, 0.5, 0.5), ["below chance"]),
    ("calls every image pneumothorax", metrics(0.80, 0.60, 0.95, 1.0, 0.0), ["specificity 0"]),
    ("calls no image pneumothorax", metrics(0.80, 0.60, 0.95, 0.0, 1.0), ["sensitivity 0"]),
    ("the README's real-data run on an AMX machine", metrics(0.384, 0.20, 0.57, 1.0, 0.0, t=0.144),
     ["contains 0.5", "specificity 0"]),
    ("no interval (too few images): only the operating point", metrics(0.5, float("nan"), float("nan"), 0.0, 1.0),
     ["sensitivity 0"]),
    ("no negatives: specificity is not a sign", metrics(float("nan"), float("nan"), float("nan"), 0.5, 0.0, n_neg=0), []),
]


@pytest.mark.parametrize("m, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_sign_of_a_worthless_classifier_is_one_line(m, words):
    lines = soundness.warnings(m, "the test images")
    assert len(lines) == len(words)
    for line, word in zip(lines, words):
        assert word in line and "the test images" in line and "\n" not in line


def test_a_threshold_that_calls_everything_positive_falls_back_and_says_so():
    y = np.r_[np.ones(10), np.zeros(30)].astype(int)
    p = np.r_[np.linspace(0.05, 0.25, 8), 0.95, 0.97, np.linspace(0.3, 0.9, 30)]  # most positives scored lowest
    t = clf.choose_threshold(y, p, "max_f1")
    assert t == pytest.approx(0.05) and (p[y == 0] < t).mean() == 0  # max F1: "every image positive"
    safe, note = clf.safe_threshold(y, p, "max_f1")
    assert safe == pytest.approx(0.95) and "specificity 0.000 on the fitting images" in note and "Youden" in note


def test_a_useful_threshold_is_kept_unchanged():
    y = np.r_[np.ones(10), np.zeros(10)].astype(int)
    p = np.r_[np.linspace(0.6, 0.9, 10), np.linspace(0.1, 0.7, 10)]
    assert clf.safe_threshold(y, p, "max_f1") == (clf.choose_threshold(y, p, "max_f1"), None)


def test_no_threshold_separates_identical_scores():
    y = np.r_[np.ones(5), np.zeros(5)].astype(int)
    t, note = clf.safe_threshold(y, np.full(10, 0.3), "max_f1")
    assert t == 0.5 and "no better than chance" in note


def _chance_summary(summary: dict) -> dict:
    chance = {**summary["after"], **metrics(0.384, 0.20, 0.57, 1.0, 0.0, t=0.144)}
    chance["per_class"] = summary["after"]["per_class"]
    return {k: v for k, v in summary.items() if k != "warnings"} | {"after": chance}


def test_table2_and_the_model_card_say_it(stage2_run, tmp_path, capsys):
    from pneumoscope.folders import Run
    from pneumoscope.model_card import model_card

    run_dir = tmp_path / "run"
    shutil.copytree(stage2_run, run_dir)
    path = run_dir / "stage2" / "stage2.json"
    summary = _chance_summary(json.loads(path.read_text()))
    path.write_text(json.dumps(summary))
    print_table2(summary)
    out = capsys.readouterr().out
    assert "WARNING: ROC AUC 0.384" in out and "contains 0.5" in out and "specificity 0" in out
    card = model_card(Run(run_dir))
    assert "Classifier: ROC AUC 0.384" in card and "specificity 0" in card


def test_evaluate_cls_on_a_classifier_forced_to_chance_says_so(stage2_run, tiny_synth, tmp_path, capsys):
    """Sixteen copies of one radiograph, half labelled pneumothorax: every P is the same, so no
    classifier can tell them apart; the numbers must say so in the CLI and the JSON."""
    run_dir = tmp_path / "run"
    shutil.copytree(stage2_run, run_dir)
    image = next((tiny_synth / "png_images").glob("*.png"))
    data = labelled_folder(tmp_path / "same", [image] * 16, ["pneumothorax" if i % 2 else "normal" for i in range(16)],
                           [f"p{i}" for i in range(16)])
    assert main(["evaluate-cls", "--run", str(run_dir), "--data", str(data), "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: ROC AUC 0.500 [0.500, 0.500]" in out and "contains 0.5" in out
    assert ("sensitivity 0)" in out) != ("specificity 0)" in out)  # one class for every image, whichever it is
    m = json.loads((run_dir / "cls-same.json").read_text())
    assert len(m["warnings"]) == 2 and m["backend"].startswith("torch-")
    table = (run_dir / "cls-same.csv").read_text().splitlines()
    assert table[0] == "id,patient_id,label,p_pneumothorax,decision" and len(table) == 17


@pytest.mark.parametrize("decision, area, words", [
    ("pneumothorax", 0, "positive, not localised"), ("normal", 12, "segmented, classified normal"),
    ("pneumothorax", 12, None), ("normal", 0, None), (None, 12, None), (None, 0, None)])
def test_the_stages_disagreeing_in_words(decision, area, words):
    assert soundness.disagreement(decision, area) == words


def test_predict_says_when_the_stages_disagree(stage2_run, tiny_synth, tmp_path, capsys):
    """predictions.csv has a disagreement column, the CLI counts them in one line, and each overlay
    carries the result in words (a caption band at its top left)."""
    import cv2
    import pandas as pd

    out = tmp_path / "out"
    assert main(["predict", "--run", str(stage2_run), str(tiny_synth / "png_images"), "--out", str(out), "--backend", "torch"]) == 0
    rows = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    expected = [soundness.disagreement(d, a) or "" for d, a in zip(rows.decision, rows.mask_area_px)]
    assert rows.disagreement.tolist() == expected
    said = capsys.readouterr().out
    n = sum(1 for e in expected if e)
    assert (f"the stages disagree on {n} of {len(rows)} images" in said) == (n > 0)
    picture = cv2.imread(str(next((out / "overlays").glob("*.jpg"))))
    band = picture[:8, :40].astype(int)
    plain = cv2.imread(str(next((tiny_synth / "png_images").glob("*.png"))), cv2.IMREAD_GRAYSCALE)
    assert band.std() > 0 or band.mean() < plain[:8, :40].mean() / 2  # darkened and written on
