"""The Storage SCP: C-ECHO, C-STORE of every storage SOP class in every transfer syntax the
readers decode, an allow-list of calling AE titles; received instances go to the spool."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import LOG
from .filters import why_not

log = logging.getLogger(LOG)

# What pneumoscope's readers decode (pydicom + pylibjpeg). pynetdicom accepts, for each proposed
# context, the first syntax of this list that the sender proposed: compressed ones come first, so a
# sender that holds a compressed file never has to transcode it (dcmtk's storescu cannot, and a
# lossy file decompressed would only grow); an uncompressed proposal still gets explicit VR LE.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
]
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


def storage_ae(ae_title: str, allowed: list[str] | None) -> Any:
    """An AE accepting C-ECHO and every storage SOP class in :data:`TRANSFER_SYNTAXES`."""
    from pynetdicom import AE, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=ae_title)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    if allowed:
        ae.require_calling_aet = list(allowed)
    ae.maximum_associations = 10
    return ae


REJECTIONS = {  # (result source, diagnostic) of an A-ASSOCIATE-RJ (PS3.8 9.3.4) -> what the log says
    (1, 3): "calling AE title not in --allow-aet", (1, 7): "called AE title is not this node's (--ae-title)",
    (2, 1): "user identity not accepted", (3, 2): "too many associations at once (local limit exceeded; at most {limit})",
    (3, 1): "temporary congestion",
}


def rejection_reason(assoc: Any) -> str:
    """Why pynetdicom rejected an association, in words (from the A-ASSOCIATE-RJ it sent)."""
    rj = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    key = (getattr(rj, "result_source", None), getattr(rj, "diagnostic", None))
    text = REJECTIONS.get(key, f"rejected (source {key[0]}, reason {key[1]})")
    return text.format(limit=getattr(assoc.ae, "maximum_associations", "?"))


def handlers(store: Callable[[str, str, bytes], None], manufacturer: str, ignored: Callable[[str, str], None]) -> list:
    """pynetdicom event handlers: C-STORE into ``store(study_uid, sop_uid, file bytes)`` (instances
    that are no radiograph are acknowledged, not kept, and reported to ``ignored(study, why)``),
    C-ECHO, and a log line for each refused association."""
    from pynetdicom import evt

    def on_store(event: Any) -> int:
        try:
            ds = event.dataset
        except Exception as exc:  # a data set pydicom cannot parse: refused, said once
            log.warning("refused an instance from %s: not decodable (%s)", event.assoc.requestor.ae_title, exc.__class__.__name__)
            return CANNOT_UNDERSTAND
        study = str(ds.get("StudyInstanceUID", "") or "")
        why = why_not(ds, manufacturer)
        if why is not None:
            ignored(study, why)
            return SUCCESS
        try:
            store(study, str(ds.get("SOPInstanceUID", "") or ""), event.encoded_dataset())
        except OSError as exc:
            log.error("could not keep a received instance (%s); answered 'out of resources'", exc)
            return OUT_OF_RESOURCES
        return SUCCESS

    def on_rejected(event: Any) -> None:
        req = event.assoc.requestor
        log.warning("refused association from AE %s at %s: %s", req.ae_title, req.address, rejection_reason(event.assoc))

    return [(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, lambda event: SUCCESS), (evt.EVT_REJECTED, on_rejected)]
