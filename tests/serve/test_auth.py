"""The server in a hospital network: a bearer token, no serving beyond localhost without one unless
asked, no caching of patient pictures, unguessable ids, and one clear answer for odd uploads."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pneumoscope.cli import main  # noqa: E402
from pneumoscope.errors import PneumoscopeError  # noqa: E402
from pneumoscope.serve.app import create_app  # noqa: E402
from pneumoscope.serve.auth import check_exposure, read_token  # noqa: E402
from tests.helpers import one_error_line, write_dicom  # noqa: E402
from tests.serve.uploads import positive_png  # noqa: E402

TOKEN = "s3cret-token-for-the-tests-0123456789"
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(stage2_run):
    return TestClient(create_app(stage2_run, backend="torch", token=TOKEN))


@pytest.fixture(scope="module")
def upload(tiny_synth):
    return {"file": ("scan.png", positive_png(tiny_synth), "image/png")}


@pytest.mark.parametrize("method, path, headers, status", [
    ("get", "/health", {}, 401),
    ("get", "/health", {"Authorization": "Bearer wrong-token-of-the-same-len-xxxxx"}, 401),
    ("get", "/health", {"Authorization": TOKEN}, 401),  # no scheme
    ("get", "/health", {"Authorization": f"Basic {TOKEN}"}, 401),
    ("get", "/health", {"Authorization": f"Bearer {TOKEN}x"}, 401),
    ("get", "/health", {"Authorization": f"Bearer {TOKEN}"}, 200),
    ("get", "/health", {"Authorization": f"bearer {TOKEN}"}, 200),  # the scheme is case-insensitive (RFC 7235)
    ("get", "/", {}, 200),  # the viewer page: no patient data
    ("get", "/docs", {}, 200),
    ("get", "/predict/anything/image.png", {}, 401),
    ("post", "/predict", {}, 401),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k][:12]}" for k in v) or "no header")
def test_what_needs_the_token(client, upload, method, path, headers, status):
    kwargs = {"files": upload} if method == "post" else {}
    r = getattr(client, method)(path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer") and "needs its token" in r.json()["detail"]
    assert r.headers["cache-control"] == "no-store"


def test_patient_pictures_are_not_cached_and_ids_are_unguessable(client, upload):
    r = client.post("/predict", files=upload, headers=GOOD)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    key = r.json()["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)  # 256 random bits, URL-safe
    for url in ("image_url", "mask_url", "overlay_url"):
        pic = client.get(r.json()[url], headers=GOOD)
        assert pic.status_code == 200 and pic.headers["cache-control"] == "no-store"
        assert client.get(r.json()[url]).status_code == 401
    other = client.post("/predict", files=upload, headers=GOOD).json()["id"]
    assert other != key and len(set(other) & set(key)) > 0


def _multipart(body: bytes, boundary: str = "XyZ") -> dict:
    return {"content": body, "headers": {**GOOD, "content-type": f"multipart/form-data; boundary={boundary}"}}


def _part(data: bytes, name: str = "file") -> bytes:
    return (f'--XyZ\r\nContent-Disposition: form-data; name="{name}"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"


@pytest.mark.parametrize("case", ["two file fields", "cut before the closing boundary", "cut inside the file",
                                  "empty PixelData"])
def test_odd_uploads_get_one_clear_answer(client, tiny_synth, tmp_path, case):
    png = positive_png(tiny_synth)
    if case == "two file fields":
        r = client.post("/predict", files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))],
                        headers=GOOD)
        needle = "send one radiograph per request: this one has 2 'file' fields"
    elif case == "cut before the closing boundary":
        r = client.post("/predict", **_multipart(_part(png)))  # the whole file, but no --XyZ-- after it
        needle = "the upload was cut off: the multipart body ends before its closing boundary (--XyZ--)"
    elif case == "cut inside the file":
        r = client.post("/predict", **_multipart(_part(png)[:300]))
        needle = "the upload was cut off"
    else:
        path = write_dicom(tmp_path / "e.dcm", np.zeros((64, 64), np.uint8))
        from pydicom import dcmread

        ds = dcmread(path)
        ds.PixelData = b""
        ds.save_as(path)
        r = client.post("/predict", files={"file": ("e.dcm", path.read_bytes(), "application/dicom")}, headers=GOOD)
        needle = "no pixel data"
    assert r.status_code == 422 and needle in r.json()["detail"], r.text


@pytest.mark.parametrize("host, token, insecure, refused", [
    ("127.0.0.1", None, False, False),
    ("localhost", None, False, False),
    ("::1", None, False, False),
    ("127.0.0.2", None, False, False),
    ("0.0.0.0", None, False, True),
    ("::", None, False, True),
    ("0.0.0.0", TOKEN, False, False),
    ("0.0.0.0", None, True, False),
])
def test_serving_beyond_localhost_needs_a_token_or_an_explicit_flag(host, token, insecure, refused):
    if refused:
        with pytest.raises(PneumoscopeError, match=f"--host {re.escape(host)}: serves patient images to anyone"):
            check_exposure(host, token, insecure)
    else:
        check_exposure(host, token, insecure)


@pytest.mark.parametrize("setup, needle", [
    (lambda p: None, "cannot be read"),
    (lambda p: p.write_text(""), "the token is 0 characters; use at least 16"),
    (lambda p: p.write_text("short\n"), "the token is 5 characters"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00"), "cannot be read"),
])
def test_unusable_token_files_are_one_line(tmp_path, setup, needle):
    path = tmp_path / "token"
    setup(path)
    with pytest.raises(PneumoscopeError, match=needle):
        read_token(str(path), {})


def test_the_token_comes_from_a_file_or_the_environment(tmp_path):
    (tmp_path / "t").write_text(TOKEN + "\nsecond line ignored\n")
    assert read_token(str(tmp_path / "t"), {}) == TOKEN
    assert read_token(None, {"PNEUMOSCOPE_TOKEN": f" {TOKEN} "}) == TOKEN
    assert read_token(None, {}) is None


def test_the_cli_refuses_to_serve_to_the_network_without_a_token(stage2_run, capsys):
    assert main(["serve", "--run", str(stage2_run), "--host", "0.0.0.0", "--port", "0"]) == 2
    line = one_error_line(capsys)
    assert "--host 0.0.0.0: serves patient images to anyone" in line and "--insecure-no-token" in line
    assert "serving" not in capsys.readouterr().out
