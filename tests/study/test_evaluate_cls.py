"""evaluate-cls: a run's pipeline judged on a labelled folder, with intervals, beside the run's files."""

import json
import shutil

import pytest

from pneumoscope.cli import main
from pneumoscope.data.synth import generate
from tests.helpers import one_error_line
from tests.test_reliability import snapshot


@pytest.fixture
def run(stage2_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(stage2_run, path)
    return path


def test_external_folder(run, tmp_path, capsys):
    generate(tmp_path / "ext", n=16, size=96, seed=77, positive_rate=0.5)
    before = snapshot(run)
    assert main(["evaluate-cls", "--run", str(run), "--data", str(tmp_path / "ext"), "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "16 images (8 pneumothorax, 16 patients)" in out and "roc_auc" in out and "too wide to say much" in out
    m = json.loads((run / "cls-ext.json").read_text())
    for k in ("roc_auc", "average_precision", "sensitivity", "specificity", "ece", "pneumothorax.f1"):
        lo, hi = m["ci95"][k]
        assert lo <= hi, k
    assert m["n_images"] == 16 and m["bootstrap"]["draws"] >= 1000 and (run / "cls-ext-reliability.png").stat().st_size > 5000
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k in before} == before  # the run's own files untouched
    # What predict would remember too: the backend choice, and (when no earlier test made them in the shared
    # fixture) the export and the precision judgement with its int8 model.
    caches = {"backend.json", "backend-probe.npz", "model.onnx", "export.json", "precision.json", "model-int8.onnx"}
    assert set(after) - set(before) - caches == {"cls-ext.json", "cls-ext.csv", "cls-ext-reliability.png"}


def test_the_runs_own_data_leaves_out_what_it_trained_on(run, tiny_synth, capsys):
    assert main(["evaluate-cls", "--run", str(run), "--data", str(tiny_synth), "--backend", "torch"]) == 0
    m = json.loads(next(run.glob("cls-*.json")).read_text())
    split = (run / "split.csv").read_text().splitlines()[1:]
    seen = sum(1 for line in split if line.endswith((",train", ",val")))
    assert m["n_left_out_seen"] == seen and m["n_images"] == 24 - seen
    assert f"{seen} left out: the run trained on them" in capsys.readouterr().out


def test_a_folder_of_one_class_is_one_line(run, tmp_path, capsys):
    generate(tmp_path / "neg", n=8, size=96, seed=5, positive_rate=0.0)
    assert main(["evaluate-cls", "--run", str(run), "--data", str(tmp_path / "neg")]) == 2
    assert "needs normal and pneumothorax images" in one_error_line(capsys)


def test_the_classifiers_fitting_images_are_left_out_too(tiny_synth, tmp_path, capsys):
    """A labelled folder's unmasked positives never enter the stage-1 split but do fit stage 2: judging
    the run on that folder must leave them out (it did not, and reported AUC 0.742 for 0.549)."""
    import pandas as pd

    from tests.conftest import train_tiny_run
    from tests.helpers import labelled_folder

    images = sorted((tiny_synth / "png_images").glob("*.png"))[:16]
    labelled = labelled_folder(tmp_path / "labelled", images, ["pneumothorax"] * 8 + ["normal"] * 8,
                               [f"pat{i}" for i in range(16)])
    run = train_tiny_run(tiny_synth, tmp_path / "run", "--data", str(labelled))
    assert main(["train-cls", "--run", str(run), "--set", "stage2.n_iter=1", "--set", "stage2.cv_folds=2"]) == 0
    split = pd.read_csv(run / "split.csv", dtype=str)
    fit_ids = set(json.loads((run / "stage2" / "stage2.json").read_text())["fit_ids"])
    seen = set(split.loc[split.split.isin(["train", "val"]), "id"]) | fit_ids
    ours = {f"n{i}" for i in range(16)}
    assert fit_ids & {f"n{i}" for i in range(8)}  # some unmasked positives fitted the classifier
    assert main(["evaluate-cls", "--run", str(run), "--data", str(labelled), "--backend", "torch"]) == 0
    m = json.loads((run / "cls-labelled.json").read_text())
    assert m["n_left_out_seen"] == len(ours & seen) and m["n_images"] == len(ours - seen)
