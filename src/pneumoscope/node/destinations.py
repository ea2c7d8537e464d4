"""Where results go: C-STORE to a DICOM AE (``AE@host:port``) or STOW-RS to a DICOMweb URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PneumoscopeError

AE_TARGET = re.compile(r"^(?P<ae>[^@]+)@(?P<host>[^:]+):(?P<port>\d{1,5})$")
AE_CHARACTERS = re.compile(r"^[\x20-\x5b\x5d-\x7e]+$")  # the AE value representation: printable ASCII but backslash


def check_ae_title(title: str, flag: str) -> str:
    """An AE title as DICOM allows it (1-16 characters of printable ASCII, no backslash, not only
    spaces); one line naming ``flag`` for anything else. An over-long title is refused, never cut: a
    PACS compares it whole, so a 17-character --allow-aet could never match."""
    if not title.strip() or len(title) > 16 or not AE_CHARACTERS.match(title):
        why = ("is empty" if not title.strip() else f"has {len(title)} characters (at most 16)" if len(title) > 16
               else "holds a character an AE title cannot (printable ASCII only, no backslash)")
        raise PneumoscopeError(f"{flag} {title!r}: {why}")
    return title


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
        check_ae_title(m.group("ae"), "--send-to: the AE title")
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
    """STOW-RS; delivered only when the answer is a STOW-RS response naming every instance sent as
    stored (a proxy's welcome page at a wrong URL answers 200 too, and stores nothing)."""
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    datasets = [pydicom.dcmread(str(f)) for f in files]
    try:
        answer = DICOMwebClient(url=url).store_instances(datasets)
    except (requests.RequestException, OSError) as exc:
        raise OSError(f"{url}: STOW-RS failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    except Exception as exc:  # dicomweb-client raises HTTPError subclasses and ValueError for refusals
        raise OSError(f"{url}: STOW-RS refused ({str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__})") from exc
    check_stored(url, answer, [str(ds.SOPInstanceUID) for ds in datasets])


def check_stored(url: str, answer: object, sent: list[str]) -> None:
    """Raise OSError unless the STOW-RS response ``answer`` lists every instance of ``sent`` as stored."""
    def named(sequence: str) -> set[str]:
        items = (answer.get(sequence) or []) if hasattr(answer, "get") else []
        return {str(item.get("ReferencedSOPInstanceUID", "")) for item in items}

    stored, failed = named("ReferencedSOPSequence"), named("FailedSOPSequence")
    if not stored and not failed:
        raise OSError(f"{url}: the answer is no STOW-RS response (it names no stored instance; a wrong URL, or a "
                      "proxy's page?); kept queued")
    missing = [uid for uid in sent if uid not in stored]
    if missing:
        raise OSError(f"{url}: STOW-RS stored {len(sent) - len(missing)} of {len(sent)} instances "
                      f"({len(failed & set(sent))} refused); kept queued")
