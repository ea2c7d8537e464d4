"""Which received instances the node predicts: CR/DX radiographs, never its own results."""

from __future__ import annotations

from typing import Any

CR = "1.2.840.10008.5.1.4.1.1.1"
DX = ("1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1")  # DX for presentation / for processing
SC = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture: predicted only with Modality CR/DX (SIIM-ACR's files)
RADIOGRAPH_MODALITIES = {"CR", "DX"}


def is_own(ds: Any, manufacturer: str) -> bool:
    """Whether ``ds`` is a result this node (or any pneumoscope) made: loop protection."""
    from ..dicom_results.algorithm import made_by_pneumoscope

    return made_by_pneumoscope(ds, manufacturer) is not None


def why_not(ds: Any, manufacturer: str) -> str | None:
    """None when ``ds`` is a radiograph to predict; otherwise why it is left alone (one phrase)."""
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").upper()
    if is_own(ds, manufacturer):
        return "a pneumoscope result (never processed again)"
    if sop == CR or sop in DX or (sop == SC and modality in RADIOGRAPH_MODALITIES):
        return None
    try:
        from pydicom.uid import UID

        name = UID(sop).name or sop
    except Exception:  # an odd UID string: show it as it is
        name = sop
    return f"not a CR/DX radiograph ({name}, modality {modality or 'none'})"
