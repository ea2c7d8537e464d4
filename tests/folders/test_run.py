"""The run folder: one owner for every file name, atomic writes, derived files cleared."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from pneumoscope import config
from pneumoscope.errors import BadItemError, PneumoscopeError
from pneumoscope.folders import Run, Study, names

SRC = Path(__file__).resolve().parents[2] / "src" / "pneumoscope"


def test_not_a_run_folder_is_one_clear_error(tmp_path):
    with pytest.raises(PneumoscopeError, match="not a run folder"):
        Run(tmp_path).read_config()
    with pytest.raises(PneumoscopeError, match="no trained weights"):
        Run(tmp_path).weights_path()


def test_config_split_history_and_skipped_round_trip(tmp_path):
    run = Run(tmp_path / "r")
    run.create()
    cfg = config.load("demo", ["train.lr=5e-4"])
    run.write_config(cfg)
    assert Run(run.root).read_config() == cfg and len(run.config_sha256()) == 12
    split = pd.DataFrame({"id": ["007", "b", "c"], "patient_id": ["", "p", "p"], "label": [1, 0, 0],
                          "split": ["train", "val", "test"]})
    run.write_split(split)
    assert run.training_ids() == {"007"}  # ids stay strings (no "7")
    run.write_history(["epoch", "val_loss"], [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}])
    assert run.read_history().val_loss.tolist() == [0.5, 0.4]
    run.write_skipped([BadItemError("x", "/data/x.png", "not a readable image")])
    assert pd.read_csv(run.root / names.SKIPPED).reason.tolist() == ["not a readable image"]
    run.write_skipped([])
    assert not (run.root / names.SKIPPED).exists()


SPLIT = pd.DataFrame({"id": ["a", "b"], "patient_id": ["", ""], "label": [1, 0], "split": ["train", "val"]})


def test_writes_leave_no_temporary_files_and_create_removes_stale_ones(tmp_path):
    run = Run(tmp_path)
    (tmp_path / "best.safetensors.tmp").write_bytes(b"half a checkpoint")
    run.create()
    assert not list(tmp_path.glob("*.tmp"))
    cfg = config.load("demo")
    run.write_split(SPLIT)
    run.save_weights({"w": torch.ones(2)}, cfg, SPLIT, {"epoch": 3, "history": [1, 2]})
    run.write_metrics({"iou": float("nan"), "dice_pos": 0.5})
    assert run.read_metrics() == {"iou": None, "dice_pos": 0.5}  # strict JSON: NaN is null
    assert not list(tmp_path.glob("*.tmp"))
    state, saved_cfg = run.load_weights()
    assert torch.equal(state["w"], torch.ones(2)) and config.from_dict(saved_cfg) == cfg
    assert json.loads(run.weights_meta()["state"]) == {"epoch": 3}


def test_weights_of_another_split_are_refused(tmp_path):
    run = Run(tmp_path)
    run.write_split(SPLIT)
    run.save_weights({"w": torch.ones(2)}, config.load("demo"), SPLIT, {})
    run.write_split(SPLIT.assign(split=["val", "train"]))  # a retraining that died before its first weights
    with pytest.raises(PneumoscopeError, match="another split"):
        run.load_weights()


def test_derived_files_of_other_weights_are_ignored(tmp_path):
    run = Run(tmp_path)
    run.save_weights({"w": torch.ones(2)}, config.load("demo"), SPLIT, {})
    run.write_postprocess({"top": 0.5, "min_area": 0.0, "bottom": 0.5})
    run.write_backend_memo({"cpu": {"backend": "onnx-fp32"}})
    assert run.read_postprocess()["top"] == 0.5 and run.read_backend_memo()["cpu"]["backend"] == "onnx-fp32"
    run.memo["x"] = object()
    run.save_weights({"w": torch.zeros(2)}, config.load("demo"), SPLIT, {})  # new weights, files left in place
    assert run.memo == {} and run.read_postprocess() is None and run.read_backend_memo() == {}
    assert run.notes == [f"{tmp_path}: {names.STALE_NOTE[names.POSTPROCESS]}"]  # said, once
    run.read_postprocess()
    assert len(run.notes) == 1
    (tmp_path / names.POSTPROCESS).write_text('{"top": 0.5, "wei')  # damaged: every file is written whole, so never cut short
    with pytest.raises(PneumoscopeError, match="postprocess.json: is not valid JSON"):
        run.read_postprocess()


def test_a_cut_resume_checkpoint_is_one_clear_error(tmp_path):
    run = Run(tmp_path)
    run.save_resume_state({"model": {"w": torch.ones(1000)}, "state": {"epoch": 1}})
    assert run.load_resume_state()["state"] == {"epoch": 1}
    data = (tmp_path / names.LAST).read_bytes()
    (tmp_path / names.LAST).write_bytes(data[: len(data) // 2])
    with pytest.raises(PneumoscopeError, match="cut short or corrupt"):
        run.load_resume_state()


def test_old_pickled_runs_are_refused_with_the_upgrade_command(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"pickle")
    with pytest.raises(PneumoscopeError, match="pneumoscope upgrade-run --run"):
        Run(tmp_path).weights_path()


def test_clear_derived_removes_exactly_the_derived_files(tmp_path):
    run = Run(tmp_path)
    for name in (*[d for d in names.DERIVED if d != names.STAGE2], names.CONFIG, names.SPLIT):
        (tmp_path / name).write_text("x")
    (tmp_path / names.STAGE2).mkdir()
    (tmp_path / names.STAGE2 / "anything").write_text("x")
    (tmp_path / "model.onnx.tmp.onnx.data").write_text("x")  # weights beside an older export
    assert sorted(run.clear_derived()) == sorted([*names.DERIVED, "model.onnx.tmp.onnx.data"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names.CONFIG, names.SPLIT])


def test_study_folder(tmp_path):
    study = Study(tmp_path / "s")
    study.create()
    assert study.seg_run("resnet18").root == tmp_path / "s" / "seg" / "resnet18"
    path = study.write_table("table1", pd.DataFrame({"encoder": ["resnet18"], "iou": [0.123456]}))
    assert path.read_text() == "encoder,iou\nresnet18,0.1235\n"
    assert study.plot_path("roc_pr").parent.is_dir()


def test_no_other_module_names_a_run_folder_file():
    """The contract of the layout: only the folders package spells the names of the run folder's files."""
    spelled = [names.CONFIG, names.SPLIT, names.HISTORY, names.METRICS, names.POSTPROCESS, names.ONNX, names.EXPORT_REPORT,
               names.BACKEND_MEMO, names.BEST, names.LAST, names.S2_CLASSIFIER, names.S2_SUMMARY, names.S2_FEATURE_NAMES,
               names.S2_TABLE2, names.PRECISION, names.INT8_ONNX]  # skipped.csv is also predict's (inference/prediction_folder.py)
    pattern = re.compile("|".join(re.escape(n) for n in spelled))
    offenders = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in SRC.rglob("*.py") if p.parent.name != "folders"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
