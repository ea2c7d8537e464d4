"""The server returns DICOM results for a DICOM upload (and says why not for the others)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from pneumoscope.serve.app import create_app  # noqa: E402
from pneumoscope.serve.store import Entry, Store  # noqa: E402
from tests.helpers import write_dicom  # noqa: E402


@pytest.fixture(scope="module")
def client(dicom_run):
    return TestClient(create_app(dicom_run, backend="torch"))


def test_a_dicom_upload_gets_seg_sr_and_overlay(client, siim_sources, tmp_path):
    src = siim_sources["mono1"]
    r = client.post("/predict", files={"file": ("scan.dcm", src.read_bytes(), "application/dicom")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["dicom"]) >= {"sr", "sc"}
    study = pydicom.dcmread(src).StudyInstanceUID
    for kind, url in body["dicom"].items():
        got = client.get(url)
        assert got.status_code == 200 and got.headers["content-type"] == "application/dicom"
        assert "attachment" in got.headers["content-disposition"]
        ds = pydicom.dcmread(io.BytesIO(got.content))
        assert ds.StudyInstanceUID == study and ds.Manufacturer == "pneumoscope project", kind
    assert client.get(body["dicom"]["sr"].replace("/sr.dcm", "/pdf.dcm")).status_code == 404


def test_a_png_upload_says_why_it_has_no_dicom_results(client):
    import cv2

    ok, png = cv2.imencode(".png", np.full((64, 64), 90, np.uint8))
    body = client.post("/predict", files={"file": ("a.png", png.tobytes(), "image/png")}).json()
    assert body["dicom"] is None and "DICOM uploads only" in body["dicom_note"]


def test_a_dicom_without_a_study_uid_is_predicted_and_the_reason_given(client, tmp_path):
    path = write_dicom(tmp_path / "x.dcm", (np.random.default_rng(0).random((80, 80)) * 4000).astype(np.uint16))
    body = client.post("/predict", files={"file": ("x.dcm", path.read_bytes(), "application/dicom")}).json()
    assert body["decision"] in ("pneumothorax", "normal")
    assert body["dicom"] is None and "has no StudyInstanceUID" in body["dicom_note"]


def test_the_store_is_bounded_by_bytes_too():
    store = Store(capacity=64, max_bytes=3_000_000)
    for k in range(5):
        store.put(str(k), Entry(np.zeros((10, 10), np.uint8), np.zeros((10, 10), bool), dicom={"sc": bytes(1_000_000)}))
    assert store.get("0") is None and store.get("1") is None and store.get("4") is not None


@pytest.mark.parametrize("name, note", [("nhs_dx_no_birth_date", None), ("gh133_date_of_year_0", "Study Date"),
                                        ("patient_name_two_values", "Patient's Name"), ("iso2022_ir87_first_value_empty", None),
                                        ("pixel_spacing_abc_def", "Pixel Spacing"), ("acr_nema_cr_no_patient_id", "ACR-NEMA")])
def test_odd_headers_get_their_prediction_and_results_never_a_500(client, tmp_path, name, note):
    from tests.odd_headers import odd_dicoms

    path = odd_dicoms(tmp_path, [name])[name]
    r = client.post("/predict", files={"file": (path.name, path.read_bytes(), "application/dicom")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] in ("pneumothorax", "normal") and set(body["dicom"]) >= {"sr", "sc"}
    if note is None:
        assert body["dicom_note"] in (None, "no SEG: no finding with a mask (the SR says so)")
    else:
        assert note in body["dicom_note"]


def test_a_source_the_results_cannot_be_built_from_is_a_note(client):
    from tests.dicom_samples import PYDICOM_FILES

    data = (PYDICOM_FILES / "examples_ybr_color.dcm").read_bytes()  # ultrasound, 30 frames, no frame of reference
    r = client.post("/predict", files={"file": ("us.dcm", data, "application/dicom")})
    assert r.status_code == 200, r.text
    assert r.json()["dicom"] is None and r.json()["dicom_note"].startswith("no DICOM results: ValueError: Only a single frame")
