"""A real PACS for the tests: Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``)
started on 127.0.0.1 from a temporary configuration, and dcmtk's command-line clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def need(tool: str) -> str:
    """The path of a Debian tool, or skip with the one reason (CI installs them with apt)."""
    path = shutil.which(tool) or (ORTHANC if tool == "Orthanc" and Path(ORTHANC).exists() else None)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install orthanc orthanc-dicomweb dcmtk dicom3tools)")
    return path


class Orthanc:
    """One Orthanc server in ``root``: DICOM port, HTTP port (REST and DICOMweb), modality ``ai``."""

    def __init__(self, root: Path, node_port: int, node_ae: str = "PTXAI", aet: str = "ORTHANC",
                 dicom_port: int | None = None) -> None:
        need("Orthanc")
        self.root, self.aet = root, aet
        self.http_port, self.dicom_port = free_port(), dicom_port or free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "pneumoscope-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
            "DicomCheckCalledAet": False, "DicomModalities": {"ai": [node_ae, "127.0.0.1", node_port]},
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "HttpServerEnabled": True, "StableAge": 1,
        }
        (root / "orthanc.json").write_text(json.dumps(config))
        self.log = open(root / "orthanc.log", "wb")
        self.proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/system", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the server (and wait for it). Killed: its database lives in the test's folder and is
        never opened again, and Orthanc's orderly shutdown takes about 3 s, once per test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)
        self.log.close()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=60, **kw)

    def upload(self, path: Path) -> dict:
        """POST /instances: store a file; its Orthanc ids."""
        r = self.post("/instances", content=path.read_bytes())
        r.raise_for_status()
        return r.json()

    def instances(self, modality: str | None = None) -> list[dict]:
        """Every instance's simplified tags (optionally of one modality)."""
        out = []
        for iid in self.get("/instances").json():
            tags = self.get(f"/instances/{iid}/simplified-tags").json()
            if modality is None or tags.get("Modality") == modality:
                out.append({"id": iid, **tags})
        return out

    def file(self, iid: str) -> bytes:
        return self.get(f"/instances/{iid}/file").content

    def wait_for(self, count: int, modalities: tuple[str, ...] = ("SEG", "SR", "OT"), timeout: float = 60) -> list[dict]:
        """Wait until ``count`` instances of ``modalities`` are stored; they."""
        deadline = time.time() + timeout
        found: list[dict] = []
        while time.time() < deadline:
            found = [i for i in self.instances() if i.get("Modality") in modalities]
            if len(found) >= count:
                return found
            time.sleep(0.5)
        return found
