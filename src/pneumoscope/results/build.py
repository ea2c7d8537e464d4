"""Making the asked-for results of one prediction, and writing them: the entry points of :mod:`pneumoscope.results`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..errors import PneumoscopeError
from ..files import write_via_tmp
from .capture import secondary_capture
from .identity import KINDS, Algorithm
from .seg import segmentation
from .source import Source
from .sr import structured_report


def result_name(stem: str, kind: str) -> str:
    """File name of a result: ``<stem>.<kind>.dcm``."""
    return f"{stem}.{kind}.dcm"


def dicom_results(prediction: Any, source: Source, algorithm: Algorithm, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """The asked-for results of ``prediction`` about ``source``: kind -> pydicom Dataset. A SEG is
    made only of a non-empty mask (see docs/dicom.md); the SR references it when there is one."""
    if prediction.mask.shape != source.display.shape:
        raise PneumoscopeError(f"{source.name}: mask of shape {prediction.mask.shape} for an image of "
                               f"{source.display.shape}")
    with warnings.catch_warnings():  # highdicom's remarks on the source's values (e.g. a one-part name)
        warnings.simplefilter("ignore", UserWarning)
        return _build(prediction, source, algorithm, kinds)


def _build(prediction: Any, source: Source, algorithm: Algorithm, kinds: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seg = segmentation(source, prediction.mask, algorithm) if prediction.mask.any() and (
        "seg" in kinds or "sr" in kinds) else None
    if "seg" in kinds and seg is not None:
        out["seg"] = seg
    if "sr" in kinds:
        out["sr"] = structured_report(source, prediction, algorithm, seg)
    if "sc" in kinds:
        out["sc"] = secondary_capture(source, prediction, algorithm)
    return out


def write_results(results: dict[str, Any], folder: str | Path, stem: str) -> dict[str, Path]:
    """Write each result as ``folder/<stem>.<kind>.dcm`` (DICOM Part 10, through a temporary name)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, ds in results.items():
        path = folder / result_name(stem, kind)
        write_via_tmp(path, lambda tmp, ds=ds: ds.save_as(tmp, enforce_file_format=True))
        paths[kind] = path
    return paths
