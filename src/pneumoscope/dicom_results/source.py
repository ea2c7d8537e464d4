"""The DICOM radiograph a result is about: its header (cleaned of what the standard would reject
when copied into a new object) and its pixels as displayed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PneumoscopeError
from .header import REFERENCES, clean, describe, tag_text

# What a SEG and an SR must reference; a source without them cannot have results in its study.
REQUIRED = REFERENCES
SPACING_MM = (0.01, 5.0)  # a pixel of a radiograph (detectors ~0.1-0.2 mm; downscaled copies larger)
FIELD_MM = 2000.0  # at most this far across (a chest detector is 430 mm; stitched spine images ~1,300 mm)


@dataclass
class Source:
    """One DICOM radiograph: ``ds`` its header as results may copy it (:mod:`.header`), ``display``
    its first frame as displayed (VOI LUT or window applied, MONOCHROME1 inverted: air dark), float32
    in [0, 1]; ``notes``: what the results do not take from the source as it is, one phrase each."""

    ds: Any
    display: np.ndarray
    name: str
    notes: tuple[str, ...] = ()
    pixel_spacing: tuple[float, float, str] | None = field(default=None, repr=False)

    @classmethod
    def read(cls, path: str | Path, max_pixels: int | None = None) -> Source:
        """Read a DICOM file (a PNG or JPEG: one line, as no DICOM result can be made of it)."""
        from ..data.dicom import read_dicom_dataset
        from ..data.io import is_dicom

        path = Path(path)
        if not is_dicom(path):
            raise PneumoscopeError(f"{path}: not a DICOM file; DICOM results (SEG, SR, overlay) need a DICOM source "
                                   "with its study's identifiers")
        img, _, ds = read_dicom_dataset(str(path), str(path), max_pixels)
        return cls.of(ds, img, str(path))

    @classmethod
    def load(cls, source: Any, max_pixels: int | None = None, display: np.ndarray | None = None,
             name: str | None = None) -> Source:
        """A source from a path, the bytes of a DICOM file or a pydicom Dataset (its pixels decoded
        as ``predict`` decodes them, or ``display`` when the caller has decoded them already)."""
        if isinstance(source, (str, Path)) and display is None:
            return cls.read(source, max_pixels)
        import io

        import pydicom
        from pydicom.dataset import Dataset

        from ..data.dicom import read_dicom_dataset, read_dicom_from_dataset

        if isinstance(source, Dataset):  # its header is at hand: only its pixels may need decoding
            label = name or str(source.get("SOPInstanceUID", "") or "dataset")
            if display is None:
                display, _, _ = read_dicom_from_dataset(source, label, max_pixels)
            return cls.of(source, display, label)
        if isinstance(source, (str, Path)):
            buf: Any = str(source)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            buf = io.BytesIO(bytes(source))
        else:
            raise PneumoscopeError(f"expected the source DICOM as a path, bytes or a pydicom Dataset, got {type(source).__name__}")
        label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
        if display is None:
            display, _, ds = read_dicom_dataset(buf, label, max_pixels)
        else:
            ds = pydicom.dcmread(buf, stop_before_pixels=True, force=True)
        return cls.of(ds, display, label)

    @classmethod
    def of(cls, ds: Any, display: np.ndarray, name: str) -> Source:
        """A source from a dataset already read and its displayed pixels; checks what results need."""
        for key in REQUIRED:
            try:
                present = str(ds.get(key, "") or "").strip()
            except Exception:  # a value pydicom cannot convert
                present = ""
            if not present:
                raise PneumoscopeError(f"{name}: has no {key} ({tag_text(key)}); a DICOM result must reference it, "
                                       "so none is written")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        if display.shape != (rows, cols):
            raise PneumoscopeError(f"{name}: pixels of shape {display.shape} but Rows x Columns {rows} x {cols}")
        header = clean(ds)
        notes = list(header.notes)
        spacing = plausible_spacing(header.ds, display.shape, notes)
        return cls(header.ds, display, name, tuple(notes), spacing)

    @property
    def frames(self) -> int:
        """Frames in the source (results are about the first)."""
        return int(self.ds.get("NumberOfFrames", 1) or 1)

    def spacing(self) -> tuple[float, float, str] | None:
        """Row and column spacing in mm and the attribute they came from (see :func:`plausible_spacing`)."""
        return self.pixel_spacing


def plausible_spacing(ds: Any, shape: tuple[int, int], notes: list[str]) -> tuple[float, float, str] | None:
    """Row and column spacing in mm and the attribute they came from: Pixel Spacing (calibrated to
    the patient) before Imager Pixel Spacing (at the detector); None without a plausible one. A
    spacing outside :data:`SPACING_MM`, or one that makes the image wider than :data:`FIELD_MM`, is
    not used and said in ``notes``."""
    refused = False
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        try:
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        lo, hi = SPACING_MM
        if lo <= row <= hi and lo <= col <= hi and row * shape[0] <= FIELD_MM and col * shape[1] <= FIELD_MM:
            return row, col, key
        notes.append(f"{describe(key)} of {row:g} x {col:g} mm is not plausible for a radiograph ({lo:g}-{hi:g} mm a pixel, "
                     f"at most {FIELD_MM / 1000:g} m across): not used")
        refused = True
    if refused:
        notes.append("areas are in pixels")
    return None

