"""Reduced precision judged on the run's validation images: the record, the choice it drives, and
what predict and export say."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

import pneumoscope
from pneumoscope.cli import main
from pneumoscope.errors import PneumoscopeError
from pneumoscope.folders import Run
from pneumoscope.inference import machine, precision
from pneumoscope.inference.backends import openvino_available
from pneumoscope.inference.options import PredictOptions
from pneumoscope.inference.predictor import PneumoscopeWarning
from tests.test_locks import Holder


@pytest.fixture(scope="module")
def judged(stage2_run, tmp_path_factory):
    """A copy of the stage-2 run, judged once (export does it and prints the table)."""
    run = tmp_path_factory.mktemp("judged") / "run"
    shutil.copytree(stage2_run, run)
    return run


def test_export_judges_every_precision_this_machine_has(judged, capsys):
    assert main(["export", "--run", str(judged)]) == 0
    out = capsys.readouterr().out
    assert "precision on" in out and "fp32" in out and "reference" in out
    record = Run(judged).read_precision()
    assert record["available"] and record["max_drop"] == 0.005 and record["validation_images"] >= 1
    # every CPU runs int8: the one calibrated model judged on each runtime, OpenVINO's first
    assert [(k, e["backend"]) for k, e in record["precisions"].items() if k.startswith("int8")] == (
        [("int8", "openvino-int8"), ("int8-onnx", "onnx-int8")] if openvino_available() else [("int8", "onnx-int8")])
    assert record["arithmetic"] == machine.arithmetic(torch.device("cpu"))
    for name, e in record["precisions"].items():
        assert set(e) >= {"dice_kaggle", "dice_pos", "drop", "decision_flips", "accepted", "reason", "ms_per_image"}
        assert e["accepted"] == (e["reason"] == "accepted"), name
        assert f"  {name}" in out
    assert Run(judged).current_int8() is not None  # the judged int8 model, its sha256 checked


def test_predict_says_which_precision_and_why(judged, tiny_synth):
    path = sorted((tiny_synth / "png_images").glob("*.png"))[0]
    model = pneumoscope.load_run(judged)
    model.predict(path)
    line = next(n for n in model.notes if n.startswith("precision"))
    record = Run(judged).read_precision()
    used = next((p for p in ("int8", "bf16") if p in model.backend.name), "fp32")
    assert line.startswith(f"precision {used}")
    if used != "fp32":
        entry = next(e for e in record["precisions"].values() if e["backend"] == model.backend.name)
        assert entry["accepted"] and "accepted" in line


def test_a_forced_precision_says_what_validation_said(judged, tiny_synth):
    path = sorted((tiny_synth / "png_images").glob("*.png"))[0]
    model = pneumoscope.load_run(judged, precision="int8")
    model.predict(path)
    judged_on = {e["backend"] for k, e in Run(judged).read_precision()["precisions"].items() if k.startswith("int8")}
    assert model.backend.name in judged_on  # the faster of the runtimes int8 was judged on
    assert any(n.startswith("precision int8 (forced by --precision): int8") and "validation image(s)" in n for n in model.notes)


def test_float32_is_asked_for_and_nothing_is_judged(stage2_run, tmp_path, tiny_synth):
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run)
    (run / "precision.json").unlink(missing_ok=True)
    model = pneumoscope.load_run(run, precision="fp32")
    model.predict(sorted((tiny_synth / "png_images").glob("*.png"))[0])
    assert Run(run).read_precision() is None and "fp32" in model.backend.name


def test_without_its_validation_images_a_run_uses_float32_and_says_so(stage2_run, tmp_path, tiny_synth, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run)
    (run / "precision.json").unlink(missing_ok=True)

    def gone(*args, **kwargs):
        raise PneumoscopeError("/data/siim: no such file or folder")

    monkeypatch.setattr("pneumoscope.data.prepare.prepare_data", gone)
    model = pneumoscope.load_run(run)
    model.predict(sorted((tiny_synth / "png_images").glob("*.png"))[0])
    record = Run(run).read_precision()
    assert record["available"] is False and "cannot be read here" in record["reason"]
    assert "fp32" in model.backend.name
    assert any(n.startswith("float32: reduced precision not judged (its training data cannot be read here") for n in model.notes)
    with pytest.raises(PneumoscopeError, match="--precision int8: no int8 model"):
        pneumoscope.load_run(run, precision="int8").predict(sorted((tiny_synth / "png_images").glob("*.png"))[0])


class Zeros:
    """A "reduced precision" that loses every pixel."""

    name = "zeros"

    def __call__(self, x):
        return np.zeros((len(x), x.shape[-2], x.shape[-1]), np.float32), None


def test_a_precision_that_costs_accuracy_is_refused_and_auto_keeps_float32(stage2_run, tmp_path, tiny_synth, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run)
    (run / "precision.json").unlink(missing_ok=True)
    monkeypatch.setattr(precision, "candidates", lambda *a, **k: {"bf16": Zeros()})
    model = pneumoscope.load_run(run, backend="torch")
    record = precision.judge(Run(run), model.model, torch.device("cpu"), model.stage2)
    entry = record["precisions"]["bf16"]
    assert not entry["accepted"] and ("drops" in entry["reason"] or "decision" in entry["reason"])
    model.predict(sorted((tiny_synth / "png_images").glob("*.png"))[0])
    assert "bf16" not in model.backend.name and any(n.startswith("precision fp32: bf16 (zeros) ")
                                                              and len(n) < 300 for n in model.notes)


@pytest.mark.parametrize("drops, flips, verdict", [
    ({"dice_kaggle": 0.001, "dice_pos": 0.004}, 0, "accepted"),
    ({"dice_kaggle": -0.02, "dice_pos": 0.005}, 0, "accepted"),  # better, or exactly at the limit
    ({"dice_kaggle": 0.001, "dice_pos": 0.0051}, 0, "dice_pos drops 0.0051 > 0.005"),
    ({"dice_kaggle": 0.0, "dice_pos": 0.0}, 2, "2 stage-2 decision(s) change"),
    ({}, 0, "accepted"),  # no positives among the validation images: dice_pos undefined, not a drop
])
def test_the_verdict(drops, flips, verdict):
    assert precision.verdict(drops, flips, 0.005) == verdict


def test_int8_needs_a_runtime_that_runs_it_in_one_line():
    with pytest.raises(PneumoscopeError, match="--precision int8 runs on OpenVINO or ONNX Runtime"):
        PredictOptions(backend="torch", precision="int8").check()


def test_a_replaced_int8_model_is_named(judged, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(judged, run)  # the module's judged run stays whole for the other tests
    if Run(run).read_precision() is None:
        assert main(["export", "--run", str(run)]) == 0
    (run / "model-int8.onnx").write_bytes(b"not the judged model")
    with pytest.raises(PneumoscopeError, match="model-int8.onnx: does not match the sha256"):
        Run(run).current_int8()


@pytest.mark.slow
def test_a_candidate_that_fails_on_this_machine_is_one_line_and_out_of_the_running(stage2_run, tmp_path, tiny_synth):
    """Under ONEDNN_MAX_CPU_ISA=SSE41 OpenVINO cannot run the U-Net's resize (a traceback once ended the
    whole prediction): it is judged "failed here", and predict goes on with what does run."""
    import os
    import subprocess
    import sys

    if not openvino_available():
        pytest.skip("OpenVINO is not installed")
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run)
    image = sorted((tiny_synth / "png_images").glob("*.png"))[0]
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "SSE41"}
    out = subprocess.run([sys.executable, "-m", "pneumoscope", "predict", "--run", str(run), str(image), "--out",
                          str(tmp_path / "p")], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "predicted 1 images" in out.stdout
    record = Run(run).read_precision()
    failed = [e for e in record["precisions"].values() if e["reason"].startswith("failed here")]
    assert record["arithmetic"].split(";")[0].endswith("ONEDNN_MAX_CPU_ISA=SSE41")
    if failed:  # this OpenVINO cannot run it under SSE4.1 (seen with 2026.4): said, not used
        assert all(not e["accepted"] for e in failed) and "failed here" in out.stdout


OTHER = "cpu avx2+fma; torch 0.0"  # a kind of machine this is not


@pytest.mark.parametrize("writable", [True, False])
def test_a_run_judged_on_another_kind_of_machine_only_is_judged_here_too(judged, tmp_path, tiny_synth, writable):
    """int8 on AVX2 multiplies through 16-bit sums, VNNI does not: a verdict of one machine kind is
    not used on another. The run keeps one record per kind, on the same int8 model (or, in a run
    another process writes, none is made here: float32)."""
    run = tmp_path / "run"
    shutil.copytree(judged, run)
    record = Run(run).read_precision()
    if record is None:  # the module's export test judged it; alone, judge here
        assert main(["export", "--run", str(run)]) == 0
        record = Run(run).read_precision()
    int8_before = (run / "model-int8.onnx").read_bytes()
    (run / "precision.json").unlink()
    Run(run).write_precision({**record, "arithmetic": OTHER})  # judged elsewhere only
    here = machine.arithmetic(torch.device("cpu"))
    assert Run(run).read_precision(here) is None and Run(run).read_precision(OTHER) is not None
    path = sorted((tiny_synth / "png_images").glob("*.png"))[0]
    if writable:
        model = pneumoscope.load_run(run)
        model.predict(path)
        assert Run(run).read_precision(here)["arithmetic"] == here  # judged here ...
        assert Run(run).read_precision(OTHER) is not None  # ... beside the other machine's record
        assert (run / "model-int8.onnx").read_bytes() == int8_before  # on the same int8 model, not a recalibrated one
        assert Run(run).current_int8() is not None
    else:
        holder = Holder(run, "train-seg")  # another process writes the run: the predictor only reads
        try:
            with pytest.warns(PneumoscopeWarning, match="being written by process"):
                model = pneumoscope.load_run(run)
            model.predict(path)
        finally:
            holder.stop()
        assert Run(run).read_precision(here) is None and "fp32" in model.backend.name


def test_precision_records_are_kept_per_machine_and_dropped_with_their_int8_model(stage2_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run, ignore=shutil.ignore_patterns("precision.json"))
    base = {"available": True, "max_drop": 0.005, "precisions": {}}
    Run(run).write_precision({**base, "arithmetic": "a", "int8_sha256": "1" * 64})
    Run(run).write_precision({**base, "arithmetic": "b", "int8_sha256": "1" * 64})
    assert Run(run).read_precision("a") is not None and Run(run).read_precision()["arithmetic"] == "b"
    Run(run).write_precision({**base, "arithmetic": "c", "int8_sha256": "2" * 64})  # another int8 model: a, b judged a gone file
    assert Run(run).read_precision("a") is None and Run(run).read_precision("b") is None
    assert Run(run).read_precision("c")["int8_sha256"] == "2" * 64


def test_a_precision_file_of_one_record_reads_as_that_machines(stage2_run, tmp_path):
    """precision.json as the previous version wrote it: one record, at the top."""
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run, ignore=shutil.ignore_patterns("precision.json"))
    r = Run(run)
    (run / "precision.json").write_text(json.dumps({"available": True, "max_drop": 0.005, "precisions": {},
                                                    "arithmetic": "x", "weights_id": r.weights_id()}))
    assert r.read_precision("x")["available"] and r.read_precision("y") is None and r.read_precision()["arithmetic"] == "x"


@pytest.mark.parametrize("content, needle", [
    ({"records": []}, "field 'records' is [], not a mapping of records"),
    ({"records": {"x": {"available": True, "max_drop": 7}}}, "field 'records.x.max_drop' is 7, outside [0, 1]"),
    ({"records": {"x": {"max_drop": 0.005}}}, "field 'records.x.available' is missing"),
])
def test_a_damaged_precision_file_is_one_line_naming_the_field(stage2_run, tmp_path, content, needle):
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run, ignore=shutil.ignore_patterns("precision.json"))
    (run / "precision.json").write_text(json.dumps({**content, "weights_id": Run(run).weights_id()}))
    with pytest.raises(PneumoscopeError, match=re.escape(needle)):
        Run(run).read_precision()
