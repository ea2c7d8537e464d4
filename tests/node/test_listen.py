"""``pneumoscope listen`` against a real PACS (Orthanc) and an independent sender (dcmtk's
storescu/echoscu), each started here on 127.0.0.1; faults one test each."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pneumoscope.cli import main
from tests.dicom_samples import PYDICOM_FILES, siim_dicom
from tests.helpers import free_port
from tests.pacs import DICOMWEB_PLUGIN, Orthanc, need

pytestmark = pytest.mark.slow
NODE_AE = "PTXAI"


class NodeProcess:
    """``pneumoscope listen`` in a process of its own (it is killed in some tests)."""

    def __init__(self, run: Path, spool: Path, port: int, send_to: str, quiet: float = 1.0, log: Path | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.log_path = log or spool.parent / f"node-{time.time_ns()}.log"
        self.port = port
        cmd = [sys.executable, "-m", "pneumoscope", "listen", "--run", str(run), "--spool", str(spool), "--ae-title", NODE_AE,
               "--port", str(port), "--allow-aet", "ORTHANC", "--send-to", send_to, "--quiet-seconds", str(quiet),
               "--retry-seconds", "1", "--backend", "torch", *extra]
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log_file, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening as PTXAI"), (line, self.log())

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, count: int = 1, timeout: float = 90) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return self.log()
            assert self.proc.poll() is None, self.log()
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} x{count} in the node's log:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)
        self.log_file.close()


PROPOSE = {"1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.57": "-xs",
           "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu",
           "1.2.840.10008.1.2.4.90": "-xv", "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr",
           "1.2.840.10008.1.2.1.99": "-xd"}  # storescu's flag proposing a file's own compressed transfer syntax


def storescu(port: int, *files: Path, aet: str = "ORTHANC") -> subprocess.CompletedProcess:
    """dcmtk's storescu sending ``files`` to the node, each in its own transfer syntax (storescu
    cannot transcode compressed data: it proposes the file's syntax, one association per syntax)."""
    tool = need("storescu")
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID), []).append(f)
    result = None
    for syntax, group in groups.items():
        flags = [PROPOSE[syntax]] if syntax in PROPOSE else []
        result = subprocess.run([tool, "-R", *flags, "-aet", aet, "-aec", NODE_AE, "127.0.0.1", str(port), *map(str, group)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            return result
    return result


@pytest.fixture
def node_env(dicom_run, tmp_path):
    """A port for the node, a spool, and everything started here stopped at the end."""
    started: list = []
    yield {"run": dicom_run, "root": tmp_path, "port": free_port(), "spool": tmp_path / "spool", "started": started}
    for thing in reversed(started):
        thing.stop()


def start_orthanc(env, dicom_port: int | None = None) -> Orthanc:
    o = Orthanc(env["root"] / f"orthanc-{len(env['started'])}", env["port"], NODE_AE, dicom_port=dicom_port)
    env["started"].append(o)
    return o


def start_node(env, send_to: str, **kw) -> NodeProcess:
    node = NodeProcess(env["run"], env["spool"], env["port"], send_to, **kw)
    env["started"].append(node)
    return node


def results_in(orthanc: Orthanc) -> dict[str, bytes]:
    """SOP Instance UID -> file of every result (SEG, SR, overlay) Orthanc holds."""
    return {i["SOPInstanceUID"]: orthanc.file(i["id"]) for i in orthanc.instances() if i.get("Manufacturer") == "pneumoscope project"}


def test_orthanc_routes_real_radiographs_and_gets_results_in_their_study(node_env, siim_sources, tmp_path):
    """MONOCHROME2 JPEG Baseline (SIIM's own encoding), MONOCHROME1 and JPEG 2000 radiographs
    uploaded to Orthanc, routed to the node; SEG, SR and overlay appear in the same study and are
    the objects ``predict --dicom-out`` writes for the same files."""
    orthanc = start_orthanc(node_env)
    node = start_node(node_env, f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    sources = [siim_sources[v] for v in ("siim", "mono1", "j2k")]
    for src in sources:
        ids = orthanc.upload(src)
        r = orthanc.post("/modalities/ai/store", json={"Resources": [ids["ID"]], "Synchronous": True})
        assert r.status_code == 200, r.text
    assert main(["predict", "--run", str(node_env["run"]), *map(str, sources), "--out", str(tmp_path / "p"),
                 "--dicom-out", str(tmp_path / "d"), "--backend", "torch", "--batch-size", "1"]) == 0  # as the node does
    expected = {pydicom.dcmread(p).SOPInstanceUID: p for p in (tmp_path / "d").glob("*.dcm")}
    node.wait_log("sent ", count=3)
    got = results_in(orthanc)
    assert set(got) == set(expected)  # the same objects, by their (derived) UIDs
    for uid, path in expected.items():
        mine, theirs = pydicom.dcmread(path), pydicom.dcmread(pydicom.filebase.DicomBytesIO(got[uid]))
        assert theirs.StudyInstanceUID == mine.StudyInstanceUID
        if "PixelData" in mine:
            assert np.array_equal(mine.pixel_array, theirs.pixel_array), path.name
        else:
            assert theirs.ContentSequence == mine.ContentSequence, path.name
    for src in sources:  # each study: its radiograph plus its results, nothing else
        study = pydicom.dcmread(src).StudyInstanceUID
        found = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study}}).json()
        n_results = sum(1 for p in expected.values() if pydicom.dcmread(p).StudyInstanceUID == study)
        assert len(found) == 1 + n_results
    log = node.log()
    assert "PatientName" not in log and "case0" not in log and pydicom.dcmread(sources[0]).StudyInstanceUID not in log


def test_stow_rs_destination(node_env, siim_sources):
    if not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    orthanc = start_orthanc(node_env)
    node = start_node(node_env, f"{orthanc.url}/dicom-web")
    assert storescu(node_env["port"], siim_sources["jpegls_odd"]).returncode == 0
    node.wait_log("sent ")
    assert len(results_in(orthanc)) >= 2


def test_echo_and_an_unknown_calling_ae_is_refused(node_env, siim_sources):
    node = start_node(node_env, "NOWHERE@127.0.0.1:9")
    echo = subprocess.run([need("echoscu"), "-aet", "ORTHANC", "-aec", NODE_AE, "127.0.0.1", str(node_env["port"])],
                          capture_output=True, text=True)
    assert echo.returncode == 0, echo.stderr
    refused = storescu(node_env["port"], siim_sources["siim"], aet="STRANGER")
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
    node.wait_log("refused association from AE STRANGER")
    assert not list((node_env["spool"] / "incoming").rglob("*.dcm"))


def test_a_destination_down_gets_its_results_once_when_it_comes_back(node_env, siim_sources):
    pacs_port = free_port()
    node = start_node(node_env, f"ORTHANC@127.0.0.1:{pacs_port}")
    assert storescu(node_env["port"], siim_sources["siim"]).returncode == 0
    node.wait_log("sending to ORTHANC", count=2)  # failed twice, backing off
    orthanc = start_orthanc(node_env, dicom_port=pacs_port)
    node.wait_log("sent ")
    time.sleep(3)  # a few retry periods: nothing is sent again
    assert node.log().count("sent ") == 1
    assert len(results_in(orthanc)) >= 2
    assert len(list((node_env["spool"] / "sent").glob("*.json"))) == 1
    assert not list((node_env["spool"] / "outbox").iterdir())


def test_a_killed_node_restarted_loses_nothing_and_sends_once(node_env, siim_sources, tmp_path):
    pacs_port = free_port()
    log = tmp_path / "node.log"
    node = start_node(node_env, f"ORTHANC@127.0.0.1:{pacs_port}", quiet=2.0, log=log)
    first = siim_sources["j2k"]
    assert storescu(node_env["port"], first).returncode == 0
    node.wait_log("queued")  # study 1 predicted, its results queued (the PACS is down)
    second = siim_dicom(tmp_path / "second.dcm", "mono1", index=5)
    assert storescu(node_env["port"], second).returncode == 0  # acknowledged, so it is on disk ...
    node.stop(signal.SIGKILL)  # ... and the node dies before its quiet period ends
    assert len(list((node_env["spool"] / "incoming").rglob("*.dcm"))) == 1
    orthanc = start_orthanc(node_env, dicom_port=pacs_port)
    again = start_node(node_env, f"ORTHANC@127.0.0.1:{pacs_port}", quiet=1.0, log=log)
    again.wait_log("sent ", count=2)
    time.sleep(3)
    text = again.log()
    assert text.count("sent ") == 2 and text.count("queued") == 2  # each study predicted once, sent once
    studies = {pydicom.dcmread(p).StudyInstanceUID for p in (first, second)}
    stored = {pydicom.dcmread(pydicom.filebase.DicomBytesIO(b)).StudyInstanceUID for b in results_in(orthanc).values()}
    assert stored == studies


@pytest.mark.parametrize("name, why", [("CT_small.dcm", "not a CR/DX radiograph (CT Image Storage, modality CT)"),
                                       ("test-SR.dcm", "not a CR/DX radiograph")])
def test_what_is_no_radiograph_is_ignored_with_one_line(node_env, name, why):
    node = start_node(node_env, "NOWHERE@127.0.0.1:9")
    path = PYDICOM_FILES / name
    assert storescu(node_env["port"], path, path).returncode == 0  # acknowledged (a PACS would retry otherwise)
    text = node.wait_log(f"ignored {why}")
    assert text.count("ignored ") == 1
    assert not list((node_env["spool"] / "incoming").rglob("*.dcm"))


def test_its_own_results_are_never_processed(node_env, siim_sources, tmp_path):
    assert main(["predict", "--run", str(node_env["run"]), str(siim_sources["siim"]), "--out", str(tmp_path / "p"),
                 "--dicom-out", str(tmp_path / "d"), "--backend", "torch"]) == 0
    node = start_node(node_env, "NOWHERE@127.0.0.1:9")
    results = sorted((tmp_path / "d").glob("*.dcm"))
    assert storescu(node_env["port"], *results).returncode == 0
    node.wait_log("ignored a pneumoscope result")
    assert not list((node_env["spool"] / "incoming").rglob("*.dcm"))


def test_a_corrupt_instance_is_reported_and_its_study_still_processed(node_env, siim_sources, tmp_path):
    orthanc = start_orthanc(node_env)
    node = start_node(node_env, f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    good = siim_sources["siim"]
    bad = tmp_path / "bad.dcm"
    ds = pydicom.dcmread(good)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xe0 not a JPEG at all" * 10])
    ds.save_as(bad)
    assert storescu(node_env["port"], good, bad).returncode == 0
    text = node.wait_log("sent ")
    assert "could not predict an instance" in text and "2 received, 1 predicted" in text and "1 unreadable" in text
    assert len(list((node_env["spool"] / "failed").rglob("*.dcm"))) == 1
    sources = {pydicom.dcmread(pydicom.filebase.DicomBytesIO(b)).get("ReferencedSeriesSequence") is not None
               for b in results_in(orthanc).values()}
    assert sources


def test_the_spool_never_names_patients(node_env, siim_sources):
    node = start_node(node_env, "NOWHERE@127.0.0.1:9", quiet=30.0)
    assert storescu(node_env["port"], siim_sources["siim"]).returncode == 0
    names = [p.name for p in (node_env["spool"] / "incoming").rglob("*")]
    uid = str(pydicom.dcmread(siim_sources["siim"]).SOPInstanceUID)
    assert names and not any(uid in n or "case" in n for n in names)
    node.stop()
    assert "SIGTERM received" in node.log() and node.log().rstrip().endswith("stopped")  # a stop is said, not silent
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO listening as PTXAI", node.log(), re.MULTILINE)  # timed, like the rest


@pytest.mark.parametrize("argv, message", [
    (["--send-to", "nonsense"], "expected AE@host:port"),
    ([], "no --send-to"),
    (["--send-to", "A@h:1", "--ae-title", "A" * 17], "has 17 characters (at most 16)"),
    (["--send-to", "A@h:1", "--ae-title", "BAD AE\\X"], "--ae-title 'BAD AE\\\\X': holds a character an AE title cannot"),
    (["--send-to", "A@h:1", "--ae-title", "   "], ": is empty"),
    (["--send-to", "A@h:1", "--allow-aet", "ORTHANC", "--allow-aet", "B" * 17], "--allow-aet 'BBBBBBBBBBBBBBBBB': has 17"),
    (["--send-to", "ORTH\\ANC@h:1"], "--send-to: the AE title 'ORTH\\\\ANC': holds a character"),
    (["--send-to", "A" * 17 + "@h:1"], "--send-to: the AE title 'AAAAAAAAAAAAAAAAA': has 17 characters"),
])
def test_bad_listen_options_are_one_line_before_the_model_loads(tmp_path, capsys, argv, message):
    """Checked first: with a run that does not exist, the line is still about the option."""
    assert main(["listen", "--run", str(tmp_path / "no-run"), "--spool", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "s").exists()


def test_a_taken_port_is_one_line(dicom_run, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["listen", "--run", str(dicom_run), "--spool", str(tmp_path / "s"), "--port", str(port),
                     "--send-to", "A@127.0.0.1:9"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_job_files_are_whole_json(node_env, siim_sources):
    node = start_node(node_env, "NOWHERE@127.0.0.1:9")
    assert storescu(node_env["port"], siim_sources["j2k"]).returncode == 0
    node.wait_log("queued")
    jobs = list((node_env["spool"] / "outbox").glob("*/job.json"))
    assert len(jobs) == 1
    job = json.loads(jobs[0].read_text())
    assert job["destination"] == "NOWHERE@127.0.0.1:9" and len(job["sources"]) == 1
    assert all((jobs[0].parent / f).is_file() for f in job["files"])
    assert not [p for p in (node_env["spool"]).rglob("*.tmp")]
    assert os.access(node_env["spool"], os.W_OK) and shutil.which("storescu")
