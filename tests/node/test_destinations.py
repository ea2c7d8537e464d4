"""Where the node sends results: a delivery counts only when the destination says it stored them."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from pneumoscope.node.destinations import Destination, check_stored
from pneumoscope.node.service import Node, NodeOptions
from pneumoscope.node.spool import Job
from tests.odd_headers import full_dataset, save


class WelcomePage(http.server.BaseHTTPRequestHandler):
    """A proxy's page at a wrong URL: 200 and HTML to anything."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def welcome():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WelcomePage)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()


def _files(folder: Path, n: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [save(full_dataset(index=k), folder / f"{k}.dcm") for k in range(n)]


def test_a_page_that_answers_200_is_no_delivery(welcome, tmp_path):
    with pytest.raises(OSError, match="no STOW-RS response"):
        Destination.parse(welcome).send(_files(tmp_path / "f"), "PTXAI")


def test_the_node_keeps_a_job_queued_when_the_answer_is_no_stow_response(welcome, tmp_path):
    dest = Destination.parse(welcome)
    node = Node(tmp_path / "run", tmp_path / "spool", NodeOptions(destinations=(dest,), retry=60),
                predictor=SimpleNamespace(algorithm=SimpleNamespace(manufacturer="pneumoscope project")))
    files = _files(tmp_path / "f")
    job = Job("j1", str(dest), "study", ["1.2.3"], [], time.time(), time.time())
    node.spool.queue(job, {f.name: f for f in files})
    assert node.send_ready() == 0
    (folder, kept), = node.spool.jobs()
    assert kept.attempts == 1 and "no STOW-RS response" in kept.last_error and not list(node.spool.sent.iterdir())


@pytest.mark.parametrize("stored, failed, message", [
    ([], [], "no STOW-RS response"), (["1.2.1"], [], "stored 1 of 2 instances (0 refused)"),
    (["1.2.1"], ["1.2.2"], "stored 1 of 2 instances (1 refused)"), (["1.2.1", "1.2.2"], [], None)])
def test_a_stow_answer_must_name_every_instance_sent(stored, failed, message):
    answer = pydicom.Dataset()
    if stored:
        answer.ReferencedSOPSequence = [pydicom.Dataset() for _ in stored]
        for item, uid in zip(answer.ReferencedSOPSequence, stored):
            item.ReferencedSOPInstanceUID = uid
    if failed:
        answer.FailedSOPSequence = [pydicom.Dataset() for _ in failed]
        for item, uid in zip(answer.FailedSOPSequence, failed):
            item.ReferencedSOPInstanceUID = uid
    if message is None:
        check_stored("u", answer, ["1.2.1", "1.2.2"])
    else:
        with pytest.raises(OSError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_stored("u", answer, ["1.2.1", "1.2.2"])


def test_stow_to_a_real_pacs_counts_as_delivered(tmp_path):
    from tests.helpers import free_port
    from tests.pacs import DICOMWEB_PLUGIN, Orthanc

    if not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    orthanc = Orthanc(tmp_path / "orthanc", free_port())
    try:
        Destination.parse(f"{orthanc.url}/dicom-web").send(_files(tmp_path / "f"), "PTXAI")
        assert len(orthanc.instances()) == 2
    finally:
        orthanc.stop()
