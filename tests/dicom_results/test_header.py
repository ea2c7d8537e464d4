"""The one cleaning step between a source's header and every DICOM result (dicom_results/header.py), on
headers nobody here wrote: the cases real exports and anonymisers produced, a generated table of
each copied attribute deleted, emptied and made invalid, and pydicom's own test files; every object
checked by dciodvfy (dicom3tools)."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from pneumoscope.dicom_results import Algorithm
from pneumoscope.dicom_results.build import make_results, write_results
from pneumoscope.dicom_results.header import _vm_allows, copied_keywords, describe, result_type, value_problem
from pneumoscope.dicom_results.source import Source
from pneumoscope.inference.predictor import Prediction
from tests.dicom_samples import PYDICOM_FILES
from tests.odd_headers import FULL, INVALID_BY_VR, ODD, dciodvfy_errors, errors_beyond, full_dataset, odd_dicoms, raw, save

ALGORITHM = Algorithm("0.1.0", "0" * 32, "U-Net test", 0.5)


def _prediction(shape: tuple[int, int], p: float = 0.9, box: tuple[slice, slice] | None = None) -> Prediction:
    mask = np.zeros(shape, bool)
    mask[box or (slice(shape[0] // 4, shape[0] // 2), slice(shape[1] // 4, shape[1] // 2))] = True
    return Prediction(np.zeros(shape, np.float32), mask, p, "pneumothorax" if p >= 0.5 else "normal")


def _made(source: Source, tmp_path, stem: str = "r") -> tuple[dict, list]:
    made = make_results(_prediction(source.display.shape), source, ALGORITHM)
    paths = write_results(made, tmp_path, stem)
    return made, [(k, p) for k, p in paths.items()]


@pytest.mark.parametrize("spec, n, ok", [("1", 1, True), ("1", 2, False), ("2", 1, False), ("2", 2, True),
                                         ("1-n", 5, True), ("1-n", 0, False), ("2-2n", 4, True), ("2-2n", 3, False),
                                         ("1-3", 3, True), ("1-3", 4, False), ("3-3n", 6, True)])
def test_value_multiplicity_as_the_dictionary_writes_it(spec, n, ok):
    assert _vm_allows(spec, n) is ok


@pytest.mark.parametrize("keyword, vr, vm, value, fragment", [
    ("StudyDate", "DA", "1", "20240229", None), ("StudyDate", "DA", "1", "20230229", "calendar date"),
    ("StudyDate", "DA", "1", "00000000", "calendar date"), ("StudyDate", "DA", "1", "2024-1-1", "not a date"),
    ("StudyTime", "TM", "1", "235960.123456", None), ("StudyTime", "TM", "1", "2400", "not a time"),
    ("StudyInstanceUID", "UI", "1", "1.2.840.10008", None), ("StudyInstanceUID", "UI", "1", "1.2.0840", "leading zero"),
    ("PatientID", "LO", "1", "x" * 64, None), ("PatientID", "LO", "1", "x" * 65, "65 characters"),
    ("PatientID", "LO", "1", "a\\b", "backslash"), ("PatientName", "PN", "1", "A^B^C^D^E", None),
    ("PatientName", "PN", "1", "A^B^C^D^E^F", "person name"), ("PatientSex", "CS", "1", "M", None),
    ("PatientSex", "CS", "1", "U", "values the standard defines"), ("PatientWeight", "DS", "1", "inf", "not a"),
    ("PatientAge", "AS", "1", "045Y", None), ("PatientAge", "AS", "1", "45", "not an age"),
    ("InstanceNumber", "IS", "1", "99999999999", "range"), ("PatientComments", "LT", "1", "line\nline", None),
])
def test_value_problems_by_vr(keyword, vr, vm, value, fragment):
    why = value_problem(keyword, vr, vm, value)
    assert (why is None) if fragment is None else (fragment in why), why


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return odd_dicoms(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("name", list(ODD))
def test_every_odd_header_gets_valid_results_and_a_note_naming_what_changed(odd, name, tmp_path):
    """Each case: results made (never a traceback), dciodvfy finds no error but about a source UID
    the standard makes a result reference as it is, and the notes say what was not copied as it was."""
    _, fragments, kept = ODD[name]
    source = Source.read(odd[name])
    made, paths = _made(source, tmp_path)
    assert set(made.objects) == {"seg", "sr", "sc"}, made.note
    for fragment in fragments:
        assert fragment in made.note, made.note
    if not fragments:
        assert made.note == "", made.note
    for kind, path in paths:
        assert errors_beyond(dciodvfy_errors(path), kept) == [], (kind, made.note)
    sr = pydicom.dcmread(dict(paths)["sr"])
    original = pydicom.dcmread(odd[name], force=True)
    assert sr.StudyInstanceUID == original.StudyInstanceUID  # in the source's study, always
    if not any("Patient ID" in f for f in fragments):
        assert str(sr.PatientID) == str(original.get("PatientID", "") or "")  # the identity is not changed unsaid


def test_names_in_other_character_sets_are_kept_in_utf8(odd, tmp_path):
    made, _ = _made(Source.read(odd["iso2022_ir87_first_value_empty"]), tmp_path)
    sr = made.objects["sr"]
    assert sr.SpecificCharacterSet == "ISO_IR 192" and str(sr.PatientName) == "Yamada^Tarou=山田^太郎"
    latin = make_results(_prediction((64, 64)), Source.read(odd["latin1_name_no_charset"]), ALGORITHM)
    assert str(pydicom.dcmread(__import__("io").BytesIO(latin.encoded["seg"])).PatientName) == "Müller^Jörg"


def test_an_implausible_spacing_gives_the_area_in_pixels(odd):
    source = Source.read(odd["pixel_spacing_1e6_mm"])
    assert source.spacing() is None
    plain = Source.read(odd["nhs_dx_no_birth_date"])
    assert plain.spacing() == (0.139, 0.139, "PixelSpacing")


GENERATED = [(k, how) for k in FULL if k in copied_keywords() and k != "SpecificCharacterSet"
             for how in ("deleted", "emptied", "invalid")]


@pytest.mark.parametrize("keyword, how", GENERATED)
def test_each_copied_attribute_deleted_emptied_or_invalid(keyword, how, tmp_path):
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    ds = full_dataset()
    vr = dictionary_VR(tag_for_keyword(keyword))
    if how == "deleted":
        delattr(ds, keyword)
    else:
        raw(ds, keyword, "" if how == "emptied" else INVALID_BY_VR[vr])
    source = Source.read(save(ds, tmp_path / "x.dcm"))
    made, paths = _made(source, tmp_path)
    assert set(made.objects) == {"seg", "sr", "sc"}, made.note
    for kind, path in paths:
        assert dciodvfy_errors(path) == [], (kind, made.note)
    sr = made.objects["sr"]
    if how == "invalid" and keyword != "PixelSpacing":
        assert describe(keyword) in made.note
    if how == "invalid" and keyword in sr:  # nothing of an invalid value is kept: emptied, or the result's own
        assert str(sr[keyword].value or "") != INVALID_BY_VR[vr]
        if sr[keyword].value in (None, ""):
            assert result_type(keyword) == "2"


def _bundled() -> list:
    return sorted(PYDICOM_FILES.glob("*.dcm")) + sorted((PYDICOM_FILES.parent / "charset_files").glob("*.dcm"))


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """name -> (results, written paths) of each of pydicom's files that reads as an image (None: it does not)."""
    from pneumoscope.errors import PneumoscopeError

    out = {}
    for path in _bundled():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                source = Source.read(path)
            except PneumoscopeError:
                out[path.name] = None  # not a readable image (predict says so, one line): no results to make
                continue
        out[path.name] = _made(source, tmp_path_factory.mktemp("bundled"))
    return out


@pytest.mark.parametrize("name", [p.name for p in _bundled()])
def test_pydicom_test_files_have_valid_results_or_one_line(bundled, name):
    """pydicom's own files (CT, MR, US, SC, RGB, charsets, odd encodings): whatever reads as an image
    gets results that pass dciodvfy, or a note saying why it has none; nothing raises."""
    if bundled[name] is None:
        return
    made, paths = bundled[name]
    if not made.objects:
        assert made.note.startswith("no DICOM results: ") or "; no DICOM results: " in made.note
    for kind, written in paths:
        assert dciodvfy_errors(written) == [], (kind, made.note)


def test_pydicom_files_gave_results_for_most(bundled):
    """The table above is not vacuous: most of pydicom's image files get results."""
    assert sum(1 for v in bundled.values() if v is not None and v[0].objects) >= 40


def test_a_uid_changes_with_the_answer_and_only_then(odd):
    source = Source.read(odd["nhs_dx_no_birth_date"])
    a = make_results(_prediction((64, 64)), source, ALGORITHM).objects
    again = make_results(_prediction((64, 64)), source, ALGORITHM).objects
    other_mask = make_results(_prediction((64, 64), box=(slice(5, 30), slice(5, 30))), source, ALGORITHM).objects
    other_p = make_results(_prediction((64, 64), p=0.7), source, ALGORITHM).objects
    uids = {k: d.SOPInstanceUID for k, d in a.items()}
    assert uids == {k: d.SOPInstanceUID for k, d in again.items()}
    assert all(other_mask[k].SOPInstanceUID != uids[k] for k in ("seg", "sr", "sc"))
    assert other_p["seg"].SOPInstanceUID == uids["seg"]  # the same mask: the same SEG
    assert other_p["sr"].SOPInstanceUID != uids["sr"] and other_p["sc"].SOPInstanceUID != uids["sc"]
    assert {k: d.SeriesInstanceUID for k, d in other_p.items()} == {k: d.SeriesInstanceUID for k, d in a.items()}


def test_a_normal_decision_with_a_mask_writes_no_segmentation(odd):
    made = make_results(_prediction((64, 64), p=0.2), Source.read(odd["nhs_dx_no_birth_date"]), ALGORITHM)
    assert set(made.objects) == {"sr", "sc"}


def test_a_segmentation_given_as_a_source_gets_one_line(tmp_path):
    seg = make_results(_prediction((64, 64)), Source.read(odd_dicoms(tmp_path, ["no_modality"])["no_modality"]),
                       ALGORITHM).encoded["seg"]
    (tmp_path / "seg.dcm").write_bytes(seg)
    made = make_results(_prediction((64, 64)), str(tmp_path / "seg.dcm"), ALGORITHM)
    assert not made.objects and made.note == "no DICOM results: the source is a segmentation, not a radiograph"
