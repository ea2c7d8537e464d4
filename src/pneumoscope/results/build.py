"""Which results to write, who made them, and writing them: the entry points of :mod:`pneumoscope.results`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PneumoscopeError
from ..files import write_via_tmp
from .source import Source

KINDS = ("seg", "sr", "sc")  # segmentation, structured report, secondary capture (burned-in overlay)
SERIES = {"seg": (9301, "AI pneumothorax segmentation"), "sr": (9302, "AI pneumothorax report"),
          "sc": (9303, "AI pneumothorax overlay (not for diagnosis)")}


def parse_kinds(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``seg,sr,sc`` (any subset, any order) as a tuple in the canonical order; one line for anything else."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in KINDS]
    if unknown or not items:
        raise PneumoscopeError(f"--dicom-objects {','.join(items) or repr(text)}: choose any of {', '.join(KINDS)} "
                               "(comma-separated)")
    return tuple(k for k in KINDS if k in items)


@dataclass(frozen=True)
class Algorithm:
    """The algorithm named in every result: package, version, the run's weights and its model."""

    version: str  # pneumoscope's version
    weights_id: str  # the run's weights id (32 hex digits)
    model: str  # e.g. "U-Net resnet34 + DenseNet/XGBoost"
    threshold: float | None  # stage-2 decision threshold (None: no classifier)
    name: str = "pneumoscope"
    manufacturer: str = "pneumoscope project"

    @property
    def full_version(self) -> str:
        """Version with the weights it ran (the Algorithm Version, LO: 64 characters at most)."""
        return f"{self.version} weights {self.weights_id}"[:64]

    def uid(self, source_uid: str, kind: str, part: str = "instance") -> str:
        """A UID derived from the source instance, the weights and the kind: the same result made
        twice (a rerun, a node restarted) has the same UIDs, so a PACS stores it once."""
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=[self.name, self.weights_id, source_uid, kind, part])


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
    from .capture import secondary_capture
    from .seg import segmentation
    from .sr import structured_report

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
