"""The HTTP API with FastAPI's test client: good inputs, each class of bad input, concurrency."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pneumoscope.data.rle import decode  # noqa: E402
from pneumoscope.folders import Run  # noqa: E402
from pneumoscope.serve.app import create_app  # noqa: E402
from tests.helpers import write_dicom  # noqa: E402
from tests.serve.uploads import positive_png  # noqa: E402
from tests.test_reliability import header_only_png  # noqa: E402


@pytest.fixture(scope="module")
def client(stage2_run):
    return TestClient(create_app(stage2_run, max_upload_mb=1, backend="torch"))


def _png(tiny_synth) -> bytes:
    return positive_png(tiny_synth)


def test_png_prediction_and_pictures(client, tiny_synth, caplog):
    caplog.set_level("INFO", logger="pneumoscope.serve")
    r = client.post("/predict", files={"file": ("patient-smith.png", _png(tiny_synth), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 <= body["p_pneumothorax"] <= 1 and body["decision"] in ("normal", "pneumothorax")
    assert body["disagreement"] in (None, "positive, not localised", "segmented, classified normal")
    assert body["threshold"] is not None and (body["width"], body["height"]) == (96, 96)
    mask = decode(body["mask_rle"], 96, 96)
    assert mask.sum() == body["mask_area_px"]
    assert body["model"]["encoder"] == "resnet18" and body["timing_ms"]["total"] > 0
    for url in ("overlay_url", "image_url", "mask_url", "gradcam_url"):
        pic = client.get(body[url])
        assert pic.status_code == 200 and pic.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(pic.content)).size == (96, 96)
    # the access log: one line per request, the status and time, no file name, prediction ids cut short
    lines = [r.getMessage() for r in caplog.records if r.name == "pneumoscope.serve"]
    assert len(lines) == 5 and '"POST /predict" 200' in lines[0] and "token=no" in lines[0]
    assert f"/predict/{body['id'][:6]}…/overlay.png\" 200" in lines[1] and body["id"] not in " ".join(lines)
    assert "smith" not in " ".join(lines)


@pytest.mark.parametrize("name", ["jpeg_lossless_sv1", "htj2k_lossless", "jpeg_ls_lossless", "rle", "legacy"])
def test_compressed_and_legacy_dicoms_are_accepted(client, tmp_path, name):
    from tests.dicom_samples import LOSSLESS, encoded_set, radiograph12, write

    if name == "legacy":
        path = write(tmp_path / "x", radiograph12(64), "1.2.840.10008.1.2", meta=False)
    else:
        path = encoded_set(tmp_path, {name: LOSSLESS[name]})[name]
    r = client.post("/predict", files={"file": ("scan", path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "dicom" and r.json()["metadata"]["age"] == 1.5  # 018M


def test_dicom_with_metadata(client, tmp_path):
    path = write_dicom(tmp_path / "x.dcm", (np.random.default_rng(0).random((80, 80)) * 4000).astype(np.uint16),
                       sex="F", age="033Y", view="AP")
    r = client.post("/predict", files={"file": ("anything.bin", path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "dicom" and r.json()["metadata"]["sex"] == "F" and r.json()["metadata"]["age"] == 33


@pytest.mark.parametrize("name,data,status,needle", [
    ("notes.png", b"just some text, not an image", 415, "not DICOM, PNG or JPEG"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 422, "not a readable image"),
    ("broken.dcm", b"\x00" * 128 + b"DICM" + b"\x02\x00" * 30, 422, "not a readable DICOM"),
    ("empty.png", b"", 400, "empty upload"),
    ("big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 * 1024 * 1024), 413, "larger than 1 MB"),
    ("bomb.png", "bomb", 413, "bomb.png: 12000x12000 pixels (144 megapixels) is more than the limit of 25 megapixels"),
    ("tiny.png", "tiny", 422, "tiny.png: 7x1 pixels is too small for a radiograph"),
    ("../../etc/passwd", b"not an image", 415, "not DICOM, PNG or JPEG"),
])
def test_bad_uploads_are_4xx_with_a_message(client, name, data, status, needle, tmp_path):
    if data == "bomb":
        data = header_only_png(tmp_path / "b.png", 12000, 12000).read_bytes()
    elif data == "tiny":
        buf = io.BytesIO()
        Image.fromarray(np.zeros((1, 7), np.uint8)).save(buf, "PNG")
        data = buf.getvalue()
    r = client.post("/predict", files={"file": (name, data, "image/png")})
    detail = r.json()["detail"]
    assert r.status_code == status and needle in detail, detail
    assert "object at 0x" not in detail and "Traceback" not in detail


@pytest.mark.parametrize("kwargs", [{}, {"files": {"image": ("a.png", b"x")}}, {"data": {"file": "text, not a file"}}],
                         ids=["no body", "another field name", "a text field"])
def test_a_request_without_a_file_is_told_how_to_send_one(client, kwargs):
    r = client.post("/predict", **kwargs)
    assert r.status_code == 422 and "file field named 'file'" in r.json()["detail"]


def test_unknown_id_and_path_like_ids(client):
    assert client.get("/predict/deadbeef/overlay.png").status_code == 404
    assert client.get("/predict/..%2F..%2Fetc%2Fpasswd/overlay.png").status_code == 404


def test_health_openapi_and_viewer(client):
    h = client.get("/health").json()
    assert h["model_loaded"] and h["stage2"] and h["version"]
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs").text
    assert "/docs-static/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    page = client.get("/").text
    assert "pneumoscope" in page and "http://" not in page and "https://" not in page  # no CDN


@pytest.mark.slow
def test_concurrent_requests_share_one_model(stage2_run, tiny_synth, monkeypatch):
    loads = []
    original = Run.load_weights
    monkeypatch.setattr(Run, "load_weights", lambda *a, **k: loads.append(1) or original(*a, **k))
    app_client = TestClient(create_app(stage2_run, backend="torch"))
    data = _png(tiny_synth)
    active, peak = [0], [0]
    lock = threading.Lock()

    def post(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return app_client.post("/predict", files={"file": (f"{i}.png", data, "image/png")})
        finally:
            with lock:
                active[0] -= 1

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(16)))
    assert [r.status_code for r in results] == [200] * 16
    assert len({r.json()["id"] for r in results}) == 16
    assert len({r.json()["mask_rle"] for r in results}) == 1  # same input, same answer under load
    assert len(loads) == 1 and peak[0] > 1
