"""The one entry to DICOM results: a prediction and its source in, the asked-for objects out (as
datasets and as Part 10 bytes), with what could not be taken from the source said in a note.

``predict --dicom-out``, the HTTP server, ``pneumoscope listen`` and :meth:`Prediction.to_dicom`
all call :func:`make_results`. It never raises for what one file holds: a source that cannot have
results (no Study Instance UID, a segmentation given as a source, a geometry highdicom refuses)
gives no objects and a note saying why, so that one file costs one line and never a batch.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PneumoscopeError, one_line, without_name
from ..files import atomic_write
from .algorithm import KINDS, NOT_IMAGES, Algorithm
from .capture import caption, secondary_capture
from .seg import segmentation
from .source import Source
from .sr import finding_present, structured_report


@dataclass(frozen=True)
class Results:
    """The DICOM results of one prediction: kind -> pydicom Dataset and kind -> its DICOM Part 10
    bytes (what is written, sent and stored), and what to say about them."""

    objects: dict[str, Any]
    notes: tuple[str, ...] = ()
    encoded: dict[str, bytes] = field(default_factory=dict)

    @property
    def note(self) -> str:
        """The notes as one line ('' when there is nothing to say)."""
        return "; ".join(self.notes)


def encode(ds: Any) -> bytes:
    """A dataset as DICOM Part 10 bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def result_name(stem: str, kind: str) -> str:
    """File name of a result: ``<stem>.<kind>.dcm``."""
    return f"{stem}.{kind}.dcm"


def make_results(prediction: Any, source: Any, algorithm: Algorithm, kinds: tuple[str, ...] = KINDS,
                 max_pixels: int | None = None, display: np.ndarray | None = None, name: str | None = None) -> Results:
    """The asked-for results of ``prediction`` about ``source`` (a :class:`Source`, a DICOM path, its
    bytes or a pydicom Dataset; ``display``: its pixels when already decoded). A SEG is made only of
    a finding with a non-empty mask (see docs/dicom.md); the SR references it when there is one.
    Never raises for the file's content."""
    try:
        src = source if isinstance(source, Source) else Source.load(source, max_pixels, display, name)
    except PneumoscopeError as exc:
        return Results({}, (f"no DICOM results: {without_name(str(exc), str(source) if isinstance(source, (str, Path)) else '')}",))
    except Exception as exc:  # a header pydicom cannot even parse
        return Results({}, (f"no DICOM results: the header cannot be read ({exc.__class__.__name__}: {one_line(exc)})",))
    why = _why_not(src, prediction)
    if why:
        return Results({}, (*src.notes, f"no DICOM results: {why}"))
    try:
        with warnings.catch_warnings():  # highdicom's and pydicom's remarks on values the notes already name
            warnings.simplefilter("ignore", UserWarning)
            objects = _build(prediction, src, algorithm, kinds)
            encoded = {kind: encode(ds) for kind, ds in objects.items()}
    except Exception as exc:  # highdicom refuses a geometry or value the cleaning could not foresee
        return Results({}, (*src.notes, f"no DICOM results: {exc.__class__.__name__}: {one_line(exc)[:300]}"))
    return Results(objects, src.notes, encoded)


def _why_not(src: Source, prediction: Any) -> str | None:
    """Why no result can be about ``src`` (None: it can)."""
    sop = str(src.ds.get("SOPClassUID", ""))
    if sop in NOT_IMAGES:
        return f"the source is {NOT_IMAGES[sop]}, not a radiograph"
    if prediction.mask.shape != src.display.shape:
        return f"mask of shape {prediction.mask.shape} for an image of {src.display.shape}"
    from highdicom._standard_utils import get_sop_class_iod_map  # the classes whose modules highdicom knows

    if sop not in get_sop_class_iod_map():
        return f"its SOP Class UID {sop[:64]} is no image storage class the results can reference"
    return None


def _build(prediction: Any, source: Source, algorithm: Algorithm, kinds: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    present = finding_present(prediction)
    seg = segmentation(source, prediction.mask, algorithm, _digest(prediction.mask)) if present and prediction.mask.any() and (
        "seg" in kinds or "sr" in kinds) else None
    if "seg" in kinds and seg is not None:
        out["seg"] = seg
    if "sr" in kinds:
        out["sr"] = structured_report(source, prediction, algorithm, seg)
    if "sc" in kinds:
        out["sc"] = secondary_capture(source, prediction, algorithm,
                                      _digest(prediction.mask, caption(prediction, algorithm)))
    for ds in out.values():
        _series_attributes(ds, source)
    return out


UNPAIRED = {"CHEST", "THORAX", "ABDOMEN", "HEAD", "NECK", "SPINE", "PELVIS", "HEART", "WHOLEBODY"}  # CID 4031's unpaired parts


def _series_attributes(ds: Any, source: Source) -> None:
    """What a PACS lists a result series by: the source's Body Part Examined (checked by the cleaning
    step; e.g. CHEST) and the series' date and time, those of the object's content (when it was made)."""
    body = source.ds.get("BodyPartExamined")
    if body:
        ds.BodyPartExamined = body
        if str(body).upper() in UNPAIRED and "Laterality" in ds:  # 2C: only for a paired structure (a chest is none)
            del ds.Laterality
    if ds.get("ContentDate"):
        ds.SeriesDate = ds.ContentDate
        if ds.get("ContentTime"):
            ds.SeriesTime = ds.ContentTime


def _digest(mask: np.ndarray, *parts: str) -> str:
    """What an object shows, in 32 hex digits: its UID changes when its content does."""
    h = hashlib.sha256(repr(mask.shape).encode())
    h.update(np.packbits(mask.astype(bool)).tobytes())
    for p in parts:
        h.update(p.encode())
    return h.hexdigest()[:32]


def write_results(results: dict[str, Any] | Results, folder: str | Path, stem: str) -> dict[str, Path]:
    """Write each result as ``folder/<stem>.<kind>.dcm`` (DICOM Part 10, through a temporary name)."""
    encoded = results.encoded if isinstance(results, Results) else {k: encode(ds) for k, ds in results.items()}
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise PneumoscopeError(f"{folder}: is a file; DICOM results go into a folder") from exc
    except OSError as exc:
        raise PneumoscopeError(f"{folder}: cannot be created ({exc.strerror or exc})") from exc
    if not folder.is_dir():
        raise PneumoscopeError(f"{folder}: is a file; DICOM results go into a folder")
    paths = {}
    for kind, data in encoded.items():
        path = folder / result_name(stem, kind)
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise PneumoscopeError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
        paths[kind] = path
    return paths
