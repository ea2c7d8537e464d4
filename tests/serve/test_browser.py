"""End to end in a real browser: headless Debian Chromium driven by Playwright opens the viewer,
uploads a radiograph, waits for the overlay and the probability, and saves a screenshot."""

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.serve.uploads import positive_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser installed (apt-get install chromium)")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


TOKEN = "a-test-token-of-32-characters-xx"


def _serve(run, token=None):
    import uvicorn

    from pneumoscope.serve.app import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(run, backend="torch", token=token), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    return srv, thread, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server(stage2_run):
    srv, thread, url = _serve(stage2_run)
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def token_server(stage2_run):
    srv, thread, url = _serve(stage2_run, TOKEN)
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        yield pg
        browser.close()


def test_upload_shows_overlay_and_probability(server, page, tiny_synth, tmp_path):
    upload = tmp_path / "scan.png"
    upload.write_bytes(positive_png(tiny_synth))
    page.goto(server)
    page.set_input_files("#file", str(upload))
    page.wait_for_function("document.getElementById('prob').textContent !== '–'", timeout=60000)
    page.wait_for_function("document.getElementById('base').naturalWidth > 0 && document.getElementById('mask').naturalWidth > 0",
                           timeout=60000)
    prob = float(page.text_content("#prob"))
    assert 0 <= prob <= 1
    assert page.text_content("#decision") in ("normal", "pneumothorax")
    assert not page.is_visible("#cam")  # hidden until asked for (a CSS display rule once overrode the attribute)
    page.check("#show-cam")
    page.wait_for_function("document.getElementById('cam').naturalWidth > 0", timeout=60000)
    shot = Path(os.environ.get("PNEUMOSCOPE_SCREENSHOTS", tmp_path)) / "viewer.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not page.is_visible("#error")


def test_bad_file_shows_a_readable_error(server, page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a radiograph")
    page.goto(server)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error", state="visible", timeout=30000)
    text = page.text_content("#error")
    assert "notes.png" in text and "not DICOM, PNG or JPEG" in text and "415" in text


def test_a_server_with_a_token_asks_for_it_once(token_server, page, tiny_synth, tmp_path):
    upload = tmp_path / "scan.png"
    upload.write_bytes(positive_png(tiny_synth))
    page.goto(token_server)
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.wait_for_selector("#auth", state="visible", timeout=30000)  # asked for at once, before any upload
    page.set_input_files("#file", str(upload))
    page.fill("#token", TOKEN)
    page.click("#auth button")
    page.wait_for_function("document.getElementById('prob').textContent !== '–'", timeout=60000)
    page.wait_for_function("document.getElementById('base').naturalWidth > 0", timeout=60000)
    assert not page.is_visible("#auth") and not page.is_visible("#error")
    page.set_input_files("#file", str(upload))  # asked once: the second upload goes straight through
    page.wait_for_function("document.getElementById('mask').naturalWidth > 0", timeout=60000)
    assert not page.is_visible("#auth")


def test_a_dicom_upload_offers_its_dicom_results_for_download(token_server, page, siim_sources, tmp_path):
    """The download goes through the token-carrying fetch, so it works on a server with a token."""
    import pydicom

    page.goto(token_server)
    page.evaluate(f"sessionStorage.setItem('pneumoscope-token', '{TOKEN}')")
    page.reload()
    page.set_input_files("#file", str(siim_sources["siim"]))
    page.wait_for_selector("#dicomcard button.dicom", state="visible", timeout=60000)
    kinds = page.eval_on_selector_all("#dicomcard button.dicom", "bs => bs.map(b => b.dataset.kind)")
    assert "sr" in kinds and "sc" in kinds
    with page.expect_download() as info:
        page.click("#dicomcard button[data-kind=sr]")
    path = tmp_path / "sr.dcm"
    info.value.save_as(path)
    assert info.value.suggested_filename == "siim.sr.dcm"
    assert pydicom.dcmread(path).StudyInstanceUID == pydicom.dcmread(siim_sources["siim"]).StudyInstanceUID
