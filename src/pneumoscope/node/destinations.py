"""Where results go: C-STORE to a DICOM AE (``AE@host:port``) or STOW-RS to a DICOMweb URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PneumoscopeError

AE_TARGET = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Destination:
    """One destination: ``kind`` "dicom" (ae, host, port) or "dicomweb" (url)."""

    kind: str
    ae: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@host:port`` (C-STORE) or ``http(s)://.../dicom-web`` (STOW-RS); one line for anything else."""
        text = text.strip()
        if text.startswith(("http://", "https://")):
            return cls("dicomweb", url=text.rstrip("/"))
        m = AE_TARGET.match(text)
        if not m or not 0 < int(m.group("port")) < 65536:
            raise PneumoscopeError(f"--send-to {text!r}: expected AE@host:port (C-STORE) or an http(s):// DICOMweb URL (STOW-RS)")
        return cls("dicom", ae=m.group("ae"), host=m.group("host"), port=int(m.group("port")))

    @property
    def key(self) -> str:
        """A name safe in file names, the same for the same destination."""
        import hashlib

        return hashlib.sha256(str(self).encode()).hexdigest()[:12]

    def __str__(self) -> str:
        return self.url if self.kind == "dicomweb" else f"{self.ae}@{self.host}:{self.port}"

    def send(self, files: list[Path], calling_ae: str, timeout: float = 30.0) -> None:
        """Send every file; raise OSError (one line) when the destination is down or refuses one."""
        if self.kind == "dicomweb":
            _stow(self.url, files)
        else:
            _c_store(self, files, calling_ae, timeout)


def _c_store(dest: Destination, files: list[Path], calling_ae: str, timeout: float) -> None:
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(str(f)) for f in files]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        ae.add_requested_context(sop, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae)
    if not assoc.is_established:
        raise OSError(f"{dest}: association not established (down, or it refuses calling AE {calling_ae})")
    try:
        for f, ds in zip(files, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise OSError(f"{dest}: no answer to C-STORE of {f.name}")
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success, or stored with a warning
                raise OSError(f"{dest}: C-STORE of {f.name} failed with status 0x{code:04X}")
    finally:
        assoc.release()


def _stow(url: str, files: list[Path]) -> None:
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    try:
        DICOMwebClient(url=url).store_instances([pydicom.dcmread(str(f)) for f in files])
    except (requests.RequestException, OSError) as exc:
        raise OSError(f"{url}: STOW-RS failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    except Exception as exc:  # dicomweb-client raises HTTPError subclasses and ValueError for refusals
        raise OSError(f"{url}: STOW-RS refused ({str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__})") from exc
