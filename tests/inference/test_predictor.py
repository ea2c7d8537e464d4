"""The public Python API: load_run(...).predict(path or array), the same answers as the CLI."""

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import pneumoscope
from pneumoscope.cli import main
from pneumoscope.errors import PneumoscopeError
from tests.helpers import write_dicom


@pytest.fixture(scope="module")
def model(stage2_run):
    return pneumoscope.load_run(stage2_run, backend="torch")


def test_predict_a_path_an_array_and_uint8_alike(model, tiny_synth):
    path = sorted((tiny_synth / "png_images").glob("*_1_.png"))[0]
    by_path = model.predict(path)
    u8 = np.asarray(Image.open(path))
    by_u8, by_float = model.predict(u8), model.predict(u8 / 255.0)
    assert by_path.prob.shape == by_path.mask.shape == u8.shape and by_path.mask.dtype == bool
    for other in (by_u8, by_float):
        np.testing.assert_allclose(other.prob, by_path.prob, atol=1e-6)
        assert other.p_pneumothorax == pytest.approx(by_path.p_pneumothorax, abs=1e-6)
    assert 0 <= by_path.p_pneumothorax <= 1 and by_path.decision in ("normal", "pneumothorax")
    assert (by_path.decision == "pneumothorax") == (by_path.p_pneumothorax >= model.cls_threshold)
    assert by_path.mask_area_px == int(by_path.mask.sum())
    h, w = u8.shape
    said = repr(by_path)  # sizes and numbers, never the arrays' values
    assert said.startswith(f"Prediction({w}x{h}, mask {by_path.mask_area_px} px") and len(said) < 200 and "array" not in said
    assert repr(model).startswith("Predictor(") and "U-Net" in repr(model) and "stage 2 threshold" in repr(model)


def test_dicom_metadata_reaches_the_result(model, tmp_path):
    path = write_dicom(tmp_path / "x.dcm", (np.random.default_rng(0).random((70, 90)) * 4000).astype("uint16"),
                       sex="F", age="033Y", view="AP")
    r = model.predict(path)
    assert r.prob.shape == (70, 90) and r.metadata["sex"] == "F" and r.metadata["age"] == 33


def test_the_cli_gives_the_same_answer_as_the_api(model, stage2_run, tiny_synth, tmp_path):
    src = sorted((tiny_synth / "png_images").glob("*.png"))[:3]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in src:
        shutil.copy(f, inputs / f.name)
    assert main(["predict", "--run", str(stage2_run), str(inputs), "--out", str(tmp_path / "o"), "--backend", "torch"]) == 0
    table = pd.read_csv(tmp_path / "o" / "predictions.csv").set_index("file")
    for f in sorted(inputs.iterdir()):
        r = model.predict(f)
        row = table.loc[str(f)]
        assert row.mask_area_px == r.mask_area_px and row.decision == r.decision
        assert row.p_pneumothorax == pytest.approx(r.p_pneumothorax, abs=1e-6)


def test_integer_arrays_are_scaled_by_their_own_range(model, tiny_synth):
    """pydicom's pixel_array (12-bit data in uint16, or signed) predicts like the same picture in uint8."""
    path = sorted((tiny_synth / "png_images").glob("*_1_.png"))[0]
    u8 = np.asarray(Image.open(path))
    lo, hi = int(u8.min()), int(u8.max())
    stretched = model.predict((u8.astype(np.float64) - lo) / (hi - lo))  # the same picture, full range
    for arr in (((u8.astype(np.int64) - lo) * 16).astype(np.uint16), (u8.astype(np.int16) - 1000)):
        other = model.predict(arr)
        np.testing.assert_allclose(other.prob, stretched.prob, atol=1e-5)
        assert other.p_pneumothorax == pytest.approx(stretched.p_pneumothorax, abs=1e-5)
    white = model.predict(np.ones(u8.shape, np.float32))  # what integers > 1 became before: clipped to white
    assert not np.allclose(white.prob, stretched.prob, atol=1e-2)
    assert model.predict(u8 > 128).prob.shape == u8.shape  # bool: 0/1


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((2, 3, 4)), "2-D"),
    ("/nonexistent.png", "file not found"),
    (np.zeros((64, 64, 3), np.uint8), "2-D greyscale image, got an array of shape \\(64, 64, 3\\)"),
    (np.full((64, 64), np.nan, np.float32), "NaN or infinite"),
    (np.full((64, 64), 300.0), "must be in \\[0, 1\\], got 300..300"),
    (np.zeros((64, 64), complex), "got dtype complex128"),
    (np.array([["a"] * 64] * 64), "got dtype <U1"),
    (np.zeros((2, 2)), "too small for a radiograph"),
    (b"\x89PNG\r\n\x1a\n...", "predict takes a file path \\(str or pathlib.Path\\), a pydicom Dataset or a 2-D numpy array, got bytes"),
    (b"/data/scan.dcm", "got bytes: to predict a file's contents, write them to a file"),
    (bytearray(b"x" * 10), "got bytearray"),
    (None, "got None"),
    # 20000 x 20000 (a view of one byte: no memory taken) is refused by its shape before any conversion
    (np.broadcast_to(np.uint8(0), (20000, 20000)), "image 0: 20000x20000 pixels \\(400 megapixels\\) is more than the limit of 179"),
])
def test_bad_inputs_are_one_clear_error(model, bad, needle):
    with pytest.raises(PneumoscopeError, match=needle):
        model.predict(bad)


@pytest.mark.parametrize("batch,needle", [
    ([None], "expected a file path \\(str or pathlib.Path\\) or a 2-D numpy array for each image, got None"),
    ([b"abc"], "got bytes"),
    (["/x.png"], "got a path \\(/x.png\\).*predict\\(path\\) reads files"),
    (np.zeros((64, 64)), "takes a list of 2-D images"),
])
def test_bad_batches_are_one_clear_error(model, batch, needle):
    with pytest.raises(PneumoscopeError, match=needle):
        model.predict_batch(batch)


def test_an_empty_batch_is_an_empty_answer(model):
    assert model.predict_batch([]) == []


def test_the_servers_pixel_cap_applies_to_arrays(stage2_run):
    capped = pneumoscope.load_run(stage2_run, backend="torch", max_megapixels=0.01)
    with pytest.raises(PneumoscopeError, match="more than the limit of 0 megapixels"):
        capped.predict(np.zeros((200, 200), np.uint8))


def test_unknown_options_are_refused(stage2_run):
    with pytest.raises(PneumoscopeError, match="--backend 'tensorrt': unknown"):
        pneumoscope.load_run(stage2_run, backend="tensorrt")


@pytest.mark.slow
def test_a_remembered_onnx_backend_is_reverified_without_building_the_pytorch_model(trained_run, tiny_synth, tmp_path,
                                                                                    monkeypatch):
    pytest.importorskip("onnxruntime")
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    path = sorted((tiny_synth / "png_images").glob("*.png"))[0]
    first = pneumoscope.load_run(run, backend="onnx").predict(path)  # exports, chooses, keeps the probe
    assert (run / "backend-probe.npz").is_file()
    from pneumoscope.stage1 import unet

    def no_model(*args, **kwargs):
        raise AssertionError("the PyTorch model was built")

    monkeypatch.setattr(unet, "load_model", no_model)
    again = pneumoscope.load_run(run, backend="onnx")
    result = again.predict(path)
    np.testing.assert_allclose(result.prob, first.prob, atol=1e-6)
    assert any("remembered" in n and ("masks agree" in n or "judged on the validation images" in n) for n in again.notes)
    (run / "backend-probe.npz").write_bytes(b"cut short")  # a damaged probe: verified on this batch instead
    monkeypatch.undo()
    third = pneumoscope.load_run(run, backend="onnx")
    third.predict(path)
    assert any("remembered" in n for n in third.notes)


def test_warm_up_chooses_the_backend_before_the_first_image(stage2_run, tmp_path, tiny_synth):
    """serve and listen warm up at start: the first request or study then pays for nothing."""
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run, ignore=shutil.ignore_patterns("backend*", "precision.json", "model*.onnx", "export.json"))
    said: list[str] = []
    pred = pneumoscope.Predictor(run, pneumoscope.PredictOptions(), said.append)
    notes = pred.warm_up()
    assert pred.backend is not None and any(n.startswith("backend ") for n in notes)
    assert any(n.startswith("precision") for n in notes) and any("judging reduced precision" in s for s in said)
    chosen = pred.backend
    pred.predict(sorted((tiny_synth / "png_images").glob("*.png"))[0])
    assert pred.backend is chosen  # not chosen again on the first image
