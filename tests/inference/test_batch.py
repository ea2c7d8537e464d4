"""predict end to end: backends, streaming resume, SIIM submission, Grad-CAM, post-processing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscope.cli import main
from pneumoscope.data.rle import decode
from pneumoscope.inference.predict import predict_files
from pneumoscope.inference.predictor import PredictOptions, Predictor
from tests.helpers import write_dicom


@pytest.fixture
def run(trained_run):
    return trained_run


@pytest.fixture
def inputs(tiny_synth, tmp_path):
    d = tmp_path / "in"
    shutil.copytree(tiny_synth / "png_images", d)
    write_dicom(d / "case.dcm", (np.random.default_rng(1).random((90, 70)) * 3000).astype(np.uint16))
    return d


def test_training_saved_a_postprocessing_rule_and_evaluate_reports_both(run, capsys):
    rule = json.loads((run / "postprocess.json").read_text())
    objective = rule["objective"]  # balanced in configs/real.yaml, train-seg's default with --data
    assert {"top", "min_area", "bottom", f"val_{objective}", f"val_{objective}_plain"} <= set(rule)
    assert rule[f"val_{objective}"] >= rule[f"val_{objective}_plain"]
    assert main(["evaluate-seg", "--run", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert "postprocessed" in m and {"dice_kaggle", "rule"} <= set(m["postprocessed"])


def test_submission_decodes_back_to_the_predicted_masks(run, inputs, tmp_path):
    out = tmp_path / "o"
    r = predict_files(run, [inputs], out, PredictOptions(backend="torch", submission=str(out / "sub.csv")))
    assert r["predicted"] == 25
    sub = pd.read_csv(out / "sub.csv", dtype=str)
    assert list(sub.columns) == ["ImageId", "EncodedPixels"] and len(sub) == 25
    preds = pd.read_csv(out / "predictions.csv").set_index("file")
    for rec in sub.itertuples():
        mask = np.asarray(Image.open(out / "masks" / f"{rec.ImageId}.png")) > 0
        np.testing.assert_array_equal(decode(rec.EncodedPixels, *mask.shape).astype(bool), mask)
        assert (rec.EncodedPixels == "-1") == (mask.sum() == 0)
    assert preds.loc[str(inputs / "case.dcm"), "width"] == 70


def test_resume_skips_done_files(run, inputs, tmp_path):
    out = tmp_path / "o"
    first = sorted(inputs.glob("*.png"))[:5]
    predict_files(run, first, out, PredictOptions(backend="torch"))
    r = predict_files(run, first + [inputs / "case.dcm"], out, PredictOptions(backend="torch"))
    assert r["already_done"] == 5 and r["predicted"] == 1
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 6 and table.file.is_unique
    r = predict_files(run, first, out, PredictOptions(backend="torch", resume=False))
    assert r["predicted"] == 5 and len(pd.read_csv(out / "predictions.csv")) == 5


def test_an_output_folder_inside_the_input_folder_is_never_read_as_input(run, inputs, capsys):
    out = inputs / "pred"  # `predict DIR --out DIR/pred`, run twice
    first = predict_files(run, [inputs], out, PredictOptions(backend="torch"))
    again = predict_files(run, [inputs], out, PredictOptions(backend="torch"))
    assert first["predicted"] == 25 and again["predicted"] == 0 and again["already_done"] == 25
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 25 and not table.file.str.contains("/pred/").any()
    assert main(["predict", "--run", str(run), str(out), "--out", str(out), "--backend", "torch"]) == 2
    assert "the output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_gradcam_tta_and_onnx_from_the_cli(run, inputs, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["predict", "--run", str(run), str(inputs), "--out", str(out), "--gradcam", "--tta", "hflip",
                 "--backend", "onnx", "--workers", "3", "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "backend onnx-" in printed and "img/s" in printed  # onnx-int8 when the validation images accept it
    assert "precision " in printed
    assert len(list((out / "gradcam").glob("*.png"))) == 25
    img = np.asarray(Image.open(sorted(inputs.glob("*_1_.png"))[0]), np.float32) / 255
    heat = Predictor(run, PredictOptions(backend="torch")).gradcam([img])[0]
    assert heat.shape == img.shape and np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1 + 1e-6


def test_postprocessing_can_be_switched_off(run, tiny_synth):
    img = np.asarray(Image.open(sorted((tiny_synth / "png_images").glob("*_1_.png"))[0]), np.float32) / 255
    on = Predictor(run, PredictOptions(backend="torch"))
    off = Predictor(run, PredictOptions(backend="torch", postprocess=False))
    r_on, r_off = on.predict(img), off.predict(img)
    p_on, m_on, p_off, m_off = r_on.prob, r_on.mask, r_off.prob, r_off.mask
    np.testing.assert_allclose(p_on, p_off, atol=1e-3)
    np.testing.assert_array_equal(m_off, p_off > 0.5)
    np.testing.assert_array_equal(m_on, on.rule.apply(p_on))


def test_rerun_bookkeeping(run, inputs, tmp_path, monkeypatch):
    out = tmp_path / "o"
    first = sorted(inputs.glob("*.png"))[:4]
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    opts = PredictOptions(backend="torch", skip_bad=True)
    predict_files(run, first + [inputs / "broken.png"], out, opts)
    # the same files by a relative path: nothing predicted twice, the bad file listed once
    monkeypatch.chdir(inputs)
    r = predict_files(run, [f.name for f in first] + ["broken.png"], out, opts)
    assert r["predicted"] == 0 and r["already_done"] == 4
    assert len(pd.read_csv(out / "skipped.csv")) == 1
    # a half-written last row (a killed run) is dropped and its image predicted again
    text = (out / "predictions.csv").read_text()
    (out / "predictions.csv").write_text(text[: text.rstrip("\n").rfind("\n") + 12])
    # a later call asking for a submission covers the images done earlier too
    sub = tmp_path / "sub.csv"
    r = predict_files(run, [inputs], out, PredictOptions(backend="torch", skip_bad=True, submission=str(sub)))
    assert r["predicted"] == 25 - 3 and r["already_done"] == 3
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 25 and table.file.is_unique and table.notna().all().all()
    assert len(pd.read_csv(sub)) == 25 and len(pd.read_csv(out / "skipped.csv")) == 1


def test_no_resume_that_fails_leaves_the_folder_as_it_was(run, inputs, tmp_path, capsys):
    """``--no-resume`` over earlier results, stopped by a corrupt input: the earlier listing and pictures
    stay (once, predictions.csv was deleted first and its masks were left listed nowhere)."""
    from tests.test_reliability import snapshot

    out = tmp_path / "o"
    first = sorted(inputs.glob("*.png"))[:4]
    predict_files(run, first, out, PredictOptions(backend="torch"))
    before = snapshot(out)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in first[:2]:
        shutil.copy(f, bad / f.name)
    (bad / "zz_cut.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 20)
    assert main(["predict", "--run", str(run), str(bad), "--out", str(out), "--no-resume", "--backend", "torch"]) == 2
    assert "zz_cut.dcm" in capsys.readouterr().err
    assert snapshot(out) == before and not list(out.glob(".next-*"))
    r = predict_files(run, first[:2], out, PredictOptions(backend="torch", resume=False))  # succeeds: replaces
    assert r["predicted"] == 2 and len(pd.read_csv(out / "predictions.csv")) == 2
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == sorted(f.stem for f in first[:2])


@pytest.mark.parametrize("dicom", [False, True], ids=["png", "dicom-out"])
def test_the_pixel_cap_the_user_sets_is_the_one_checked(run, inputs, tmp_path, capsys, dicom):
    """The reader threads once checked every file against the module's 179 megapixels, whatever
    --max-megapixels said (the server and the node checked the user's): the image was decoded whole
    before the model's own check refused "image 0". Now the file is refused from its header."""
    files = [str(inputs / "case.dcm")] if dicom else [str(sorted(inputs.glob("*.png"))[0])]
    args = ["predict", "--run", str(run), *files, "--out", str(tmp_path / "o"), "--backend", "torch",
            "--max-megapixels", "0.001"] + (["--dicom-out", str(tmp_path / "d")] if dicom else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{Path(files[0]).name}: " in err and "is more than the limit of 0 megapixels" in err
