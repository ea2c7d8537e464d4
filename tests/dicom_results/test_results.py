"""DICOM results (SEG, SR, burned-in overlay) of real SIIM-ACR radiographs, checked by software
nobody here wrote: dciodvfy (dicom3tools) for the standard's IOD rules, highdicom to read back."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest

from pneumoscope import load_run
from pneumoscope.cli import main
from pneumoscope.dicom_results import Algorithm, make_results, parse_kinds
from pneumoscope.dicom_results.header import fix_age
from pneumoscope.dicom_results.source import Source
from pneumoscope.errors import PneumoscopeError
from pneumoscope.inference.predictor import Prediction
from tests.dicom_samples import SIIM_VARIANTS, siim_dicom
from tests.helpers import one_error_line
from tests.odd_headers import dciodvfy_errors


@pytest.fixture(scope="module")
def predicted(dicom_run, siim_sources, tmp_path_factory):
    """``predict --dicom-out`` over the four hospital-style radiographs."""
    root = tmp_path_factory.mktemp("dicom-predict")
    inputs = root / "in"
    inputs.mkdir()
    for src in siim_sources.values():
        shutil.copy(src, inputs / src.name)
    assert main(["predict", "--run", str(dicom_run), str(inputs), "--out", str(root / "out"),
                 "--dicom-out", str(root / "dicom"), "--backend", "torch"]) == 0
    return root


@pytest.mark.parametrize("variant", SIIM_VARIANTS)
def test_every_result_passes_dciodvfy_and_reads_back(predicted, siim_sources, variant):
    import highdicom as hd

    src = pydicom.dcmread(siim_sources[variant])
    mask = cv2.imread(str(predicted / "out" / "masks" / f"{variant}.png"), cv2.IMREAD_GRAYSCALE) > 0
    row = pd.read_csv(predicted / "out" / "predictions.csv").set_index("file").loc[str(predicted / "in" / f"{variant}.dcm")]
    seg_path, sr_path, sc_path = (predicted / "dicom" / f"{variant}.{k}.dcm" for k in ("seg", "sr", "sc"))
    # a SEG only of a finding whose mask has pixels (a "normal" decision gets none beside its SR's "Absent")
    assert seg_path.exists() == (bool(mask.any()) and row["decision"] == "pneumothorax")
    written = [p for p in (seg_path, sr_path, sc_path) if p.exists()]
    for path in written:
        assert dciodvfy_errors(path) == [], path.name
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert (ds.PatientID, ds.PatientName, ds.PatientSex) == (src.PatientID, src.PatientName, src.PatientSex)
        assert ds.ContributingEquipmentSequence[0].Manufacturer == "pneumoscope project"
        assert ds.Manufacturer == "pneumoscope project" and ds.SoftwareVersions.startswith("0.")
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in written}) == len(written)  # a new series each
    if mask.any():
        seg = hd.seg.segread(seg_path)
        got = seg.get_pixels_by_source_instance(source_sop_instance_uids=[src.SOPInstanceUID], segment_numbers=[1])
        assert got.shape == (1, src.Rows, src.Columns, 1)
        assert np.array_equal(got[0, :, :, 0] > 0, mask)  # pixel for pixel the PNG mask, on the source's grid
        desc = seg.SegmentSequence[0]
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodeValue == "36118008"
        assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert desc.SegmentAlgorithmType == "AUTOMATIC" and desc.SegmentAlgorithmName == "pneumoscope"
    sr = hd.sr.srread(sr_path)
    assert sr.VerificationFlag == "UNVERIFIED" and sr.StudyInstanceUID == src.StudyInstanceUID
    groups = sr.content.get_planar_roi_measurement_groups() if mask.any() else sr.content.get_image_measurement_groups()
    values = {m.name.meaning: (m.value, m.unit.value) for m in groups[0].get_measurements()}
    assert values["Certainty of Finding"][0] == pytest.approx(row.p_pneumothorax, abs=1e-6)
    finding = groups[0].get_qualitative_evaluations()[0]
    assert finding.value.meaning == ("Present" if row.decision == "pneumothorax" else "Absent")
    area, unit = values["Area"]
    spacing = {"siim": 0.168 * 0.168, "mono1": 0.139 * 0.139, "jpegls_odd": 0.2 * 0.2}.get(variant)
    if spacing is None:
        assert unit == "{pixels}" and area == mask.sum()
    else:
        assert unit == "mm2" and area == pytest.approx(mask.sum() * spacing, abs=0.01)
    sc = pydicom.dcmread(sc_path)
    assert sc.pixel_array.shape == (src.Rows, src.Columns, 3) and sc.BurnedInAnnotation == "YES"


def test_the_overlay_is_the_radiograph_as_displayed(predicted, siim_sources):
    """MONOCHROME1 is inverted before burning in: outside the text band and the contour the
    overlay's grey equals the displayed image (air dark) of the same pixels."""
    from pneumoscope.data.io import read_image

    for variant in ("mono1", "siim"):
        shown, _ = read_image(siim_sources[variant])
        rgb = pydicom.dcmread(predicted / "dicom" / f"{variant}.sc.dcm").pixel_array
        h = rgb.shape[0]
        lower = slice(h // 2, h)  # below the text band
        grey = rgb[lower, :, 1].astype(int)
        expected = np.clip(np.rint(shown[lower] * 255), 0, 255).astype(int)
        plain = (rgb[lower, :, 0] == rgb[lower, :, 1]) & (rgb[lower, :, 1] == rgb[lower, :, 2])
        assert np.abs(grey[plain] - expected[plain]).max() <= 1


def test_a_normal_result_has_an_sr_and_no_seg(dicom_run, siim_sources):
    model = load_run(dicom_run, backend="torch")
    res = model.predict(siim_sources["j2k"])
    empty = Prediction(res.prob, np.zeros_like(res.mask), 0.01, "normal", res.metadata, res.source, res.algorithm)
    out = empty.to_dicom()
    assert set(out) == {"sr", "sc"}
    item = out["sr"]
    import highdicom as hd

    group = hd.sr.Comprehensive3DSR.from_dataset(item).content.get_image_measurement_groups()[0]
    assert group.get_qualitative_evaluations()[0].value.meaning == "Absent"


def test_results_are_the_same_objects_when_made_again(dicom_run, siim_sources):
    """UIDs derive from the source instance and the weights: a rerun or a restarted node makes
    the same SOP Instance UIDs, so a PACS keeps one copy."""
    model = load_run(dicom_run, backend="torch")
    a = model.predict(siim_sources["siim"]).to_dicom()
    b = model.predict(siim_sources["siim"]).to_dicom(pydicom.dcmread(siim_sources["siim"]))
    assert {k: d.SOPInstanceUID for k, d in a.items()} == {k: d.SOPInstanceUID for k, d in b.items()}
    other = model.predict(siim_sources["j2k"]).to_dicom()
    assert not {d.SOPInstanceUID for d in a.values()} & {d.SOPInstanceUID for d in other.values()}


def test_a_png_asked_for_dicom_results_writes_nothing(dicom_run, siim_sources, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(siim_sources["siim"], inputs / "a.dcm")
    cv2.imwrite(str(inputs / "b.png"), np.full((64, 64), 128, np.uint8))
    assert main(["predict", "--run", str(dicom_run), str(inputs), "--out", str(tmp_path / "out"),
                 "--dicom-out", str(tmp_path / "dicom")]) == 2
    line = one_error_line(capsys)
    assert "b.png is not DICOM" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "dicom").exists()


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SOPInstanceUID"])
def test_a_dicom_without_what_results_reference_is_predicted_and_its_row_says_why_no_results(
        dicom_run, tmp_path, capsys, missing):
    path = siim_dicom(tmp_path / "x.dcm", "j2k")
    ds = pydicom.dcmread(path)
    delattr(ds, missing)
    ds.save_as(path)
    assert main(["predict", "--run", str(dicom_run), str(path), "--out", str(tmp_path / "out"),
                 "--dicom-out", str(tmp_path / "dicom"), "--backend", "torch"]) == 0
    row = pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False).iloc[0]
    assert row["dicom_note"].startswith(f"no DICOM results: has no {missing}")
    assert f"x.dcm: no DICOM results: has no {missing}" in capsys.readouterr().err
    assert not list((tmp_path / "dicom").glob("*.dcm"))
    with pytest.raises(PneumoscopeError, match=f"has no {missing}"):
        load_run(dicom_run, backend="torch").predict(path).to_dicom()


def test_an_array_prediction_needs_its_source(dicom_run, siim_sources):
    model = load_run(dicom_run, backend="torch")
    res = model.predict(np.full((64, 64), 0.5, np.float32))
    with pytest.raises(PneumoscopeError, match="need the source DICOM"):
        res.to_dicom()


@pytest.mark.parametrize("text, kinds", [("seg,sr,sc", ("seg", "sr", "sc")), ("sc, seg", ("seg", "sc")), ("SR", ("sr",))])
def test_kinds(text, kinds):
    assert parse_kinds(text) == kinds


@pytest.mark.parametrize("text", ["", "seg,pdf", "png"])
def test_unknown_kinds_are_one_line(text):
    with pytest.raises(PneumoscopeError, match="choose any of seg, sr, sc"):
        parse_kinds(text)


@pytest.mark.parametrize("value, fixed", [("38", "038Y"), ("045Y", "045Y"), ("5 M", "005M"), ("045y", "045Y"),
                                          ("", None), ("old", None), ("1234", None)])
def test_patient_age_copied_in_the_form_the_standard_wants(value, fixed):
    assert fix_age(value) == fixed


def test_library_builds_results_from_a_dataset_in_memory(siim_sources):
    ds = pydicom.dcmread(siim_sources["jpegls_odd"])
    source = Source.load(ds)
    mask = np.zeros(source.display.shape, bool)
    mask[100:150, 60:120] = True
    pred = Prediction(np.zeros(mask.shape, np.float32), mask, 0.9, "pneumothorax")
    out = make_results(pred, source, Algorithm("0.1.0", "0" * 32, "U-Net test", 0.5), ("seg",)).objects
    assert list(out) == ["seg"] and out["seg"].pixel_array.sum() == mask.sum()


def test_the_tests_above_saw_segmentations(predicted):
    """The fixture run draws masks on real radiographs: most sources get a SEG to check."""
    assert len(list((predicted / "dicom").glob("*.seg.dcm"))) >= 2
    assert len(list((predicted / "dicom").glob("*.sr.dcm"))) == len(SIIM_VARIANTS)


def test_save_dicom_names_files_after_the_source(dicom_run, siim_sources, tmp_path):
    result = load_run(dicom_run, backend="torch").predict(siim_sources["mono1"])
    paths = result.save_dicom(tmp_path, kinds="sr,sc")
    assert sorted(p.name for p in paths.values()) == ["mono1.sc.dcm", "mono1.sr.dcm"]
    ds = pydicom.dcmread(siim_sources["mono1"])
    assert result.save_dicom(tmp_path / "b", source=ds, kinds="sr")["sr"].name == "result.sr.dcm"


E2E_BUNDLED = ["CT_small.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_ybr_color.dcm",
               "liver_1frame.dcm", "rtdose.dcm", "test-SR.dcm", "no_meta.dcm", "ExplVR_BigEnd.dcm", "SC_rgb_small_odd.dcm"]
E2E_CHARSETS = ["chrJapMulti.dcm", "chrH31.dcm", "chrRuss.dcm", "chrGreek.dcm"]


def test_predict_dicom_out_over_every_odd_dicom(dicom_run, predicted, tmp_path, capsys):
    """``predict --dicom-out --skip-bad`` over the odd headers, pydicom's files, pneumoscope's own results
    and a cut file: exit 0, one line per refused file, every object written valid (dciodvfy) but for
    the source UIDs a result must reference as they are, and a rerun with the results inside the input
    folder predicts nothing of its own."""
    from tests.dicom_samples import PYDICOM_FILES
    from tests.odd_headers import ODD, errors_beyond, odd_dicoms

    inputs = tmp_path / "in"
    odd_dicoms(inputs)
    for name in E2E_BUNDLED:
        shutil.copy(PYDICOM_FILES / name, inputs / f"pydicom_{name}")
    for name in E2E_CHARSETS:
        shutil.copy(PYDICOM_FILES.parent / "charset_files" / name, inputs / f"pydicom_{name}")
    for k in ("sr", "sc", "seg"):
        own = next((predicted / "dicom").glob(f"*.{k}.dcm"), None)
        if own is not None:
            shutil.copy(own, inputs / f"own.{k}.dcm")
    (inputs / "cut.dcm").write_bytes((inputs / "no_modality.dcm").read_bytes()[:700])
    out, dicom = tmp_path / "out", inputs / "results"
    args = ["predict", "--run", str(dicom_run), str(inputs), "--out", str(out), "--dicom-out", str(dicom),
            "--skip-bad", "--backend", "torch"]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    skipped = pd.read_csv(out / "skipped.csv")
    rows = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len([e for e in err if e.startswith("skipped: ")]) == len(skipped) >= 5
    assert {"own.sr.dcm", "own.sc.dcm", "cut.dcm", "pydicom_liver_1frame.dcm", "pydicom_rtdose.dcm"} <= {
        p.split("/")[-1] for p in skipped["file"]}
    assert skipped.set_index(skipped["file"].str.split("/").str[-1]).loc["own.sc.dcm", "reason"].endswith(
        "pneumoscope's own overlay, not a radiograph: not predicted again")
    assert len(rows) + len(skipped) == len(list(inputs.glob("*.dcm")))
    written = sorted(dicom.glob("*.dcm"))
    assert len(written) >= 2 * len(ODD)
    for path in written:
        kept = ODD.get(path.name.split(".")[0], (None, None, None))[2]
        assert errors_beyond(dciodvfy_errors(path), kept) == [], path.name
    for _, r in rows.iterrows():  # a file without results says why
        if not list(dicom.glob(f"{Path(r['file']).stem}.*.dcm")):
            assert "no DICOM results" in r["dicom_note"], r["file"]
    assert main(args) == 0  # rerun: the results inside the input folder are not inputs
    again = capsys.readouterr()
    assert "predicted 0 images" in again.out and len(pd.read_csv(out / "skipped.csv")) == len(skipped)


def test_a_pydicom_dataset_is_predicted_as_its_file_is(dicom_run, siim_sources):
    """``predict(pydicom.Dataset)`` once said "got an array of shape ()"."""
    model = load_run(dicom_run, backend="torch")
    ds = pydicom.dcmread(siim_sources["mono1"])
    from_ds, from_file = model.predict(ds), model.predict(siim_sources["mono1"])
    np.testing.assert_array_equal(from_ds.mask, from_file.mask)
    assert from_ds.p_pneumothorax == from_file.p_pneumothorax
    assert from_ds.to_dicom(kinds="sr")["sr"].StudyInstanceUID == ds.StudyInstanceUID


@pytest.mark.parametrize("where, message", [("a_file", "is a file"), ("under_a_file", "cannot be created"),
                                            ("read_only", "cannot")])
def test_save_dicom_where_it_cannot_is_one_line(dicom_run, siim_sources, tmp_path, where, message):
    import os

    result = load_run(dicom_run, backend="torch").predict(siim_sources["j2k"])
    (tmp_path / "f").write_text("x")
    folder = {"a_file": tmp_path / "f", "under_a_file": tmp_path / "f" / "sub", "read_only": tmp_path / "ro"}[where]
    if where == "read_only":
        folder.mkdir()
        os.chmod(folder, 0o500)
        if os.access(folder, os.W_OK):  # root writes anyway: a read-only file system it cannot
            folder = Path("/proc/pneumoscope-results")
    try:
        with pytest.raises(PneumoscopeError, match=message):
            result.save_dicom(folder, kinds="sr")
    finally:
        if where == "read_only" and (tmp_path / "ro").exists():
            os.chmod(tmp_path / "ro", 0o700)


# When the stages disagree every output says so: one row per case (decision, mask?, the words or None).
DISAGREE = [("pneumothorax", False, "positive, not localised"), ("normal", True, "segmented, classified normal"),
            ("pneumothorax", True, None), ("normal", False, None)]


@pytest.fixture(scope="module")
def siim_prediction(dicom_run, siim_sources):
    """One real SIIM radiograph predicted once, for the rows that change its decision and mask."""
    return load_run(dicom_run, backend="torch").predict(siim_sources["siim"])


@pytest.mark.parametrize("decision, with_mask, words", DISAGREE, ids=[f"{d}-{'mask' if m else 'empty'}" for d, m, _ in DISAGREE])
def test_the_sr_and_the_overlay_say_when_the_stages_disagree(siim_prediction, siim_sources, tmp_path, decision, with_mask, words):
    import highdicom as hd

    res = siim_prediction
    mask = np.zeros_like(res.mask)
    if with_mask:
        mask[100:140, 100:160] = True
    pred = Prediction(res.prob, mask, 0.9 if decision == "pneumothorax" else 0.05, decision, res.metadata, res.source, res.algorithm)
    assert pred.disagreement == words
    paths = pred.save_dicom(tmp_path)
    sr = pydicom.dcmread(paths["sr"])
    content = hd.sr.Comprehensive3DSR.from_dataset(sr).content
    (group,) = content.get_image_measurement_groups() or content.get_planar_roi_measurement_groups()  # ROI: with a SEG
    qualifiers = {q.name.value: q.value.meaning for q in group.get_qualitative_evaluations()}
    assert qualifiers.get("STAGE-AGREE") == (None if words is None else words.capitalize())
    assert qualifiers["36118008"] == ("Present" if decision == "pneumothorax" else "Absent")
    assert dciodvfy_errors(paths["sr"]) == []
    sc = pydicom.dcmread(paths["sc"])
    assert sc.BodyPartExamined == pydicom.dcmread(siim_sources["siim"]).get("BodyPartExamined", sc.get("BodyPartExamined"))
    assert sc.SeriesDate and sc.SeriesDate == sc.ContentDate
    from pneumoscope.dicom_results.capture import caption

    assert (words in caption(pred, res.algorithm)) if words else ("not localised" not in caption(pred, res.algorithm))
    assert "XGBoost on" in sr.ManufacturerModelName and "DenseNet/XGBoost" not in sr.ManufacturerModelName
