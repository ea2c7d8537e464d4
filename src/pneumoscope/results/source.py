"""The DICOM radiograph a result is about: its header (cleaned of what the standard would reject
when copied into a new object) and its pixels as displayed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PneumoscopeError

# What a SEG and an SR must reference; a source without them cannot have results in its study.
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
AGE = re.compile(r"^\d{3}[DWMY]$")


def fix_age(value: Any) -> str | None:
    """A Patient's Age as the AS value representation wants it (``038Y``): SIIM's ``38`` padded and
    given years; ``45 Y`` or ``045y`` tidied; anything else unusable (None: left out)."""
    text = re.sub(r"\s+", "", str(value or "")).upper()
    if AGE.match(text):
        return text
    m = re.fullmatch(r"(\d{1,3})([DWMY]?)", text)
    return f"{int(m.group(1)):03d}{m.group(2) or 'Y'}" if m else None


def clean_header(ds: Any) -> Any:
    """A copy of ``ds`` without pixel data, with the attributes results copy made valid:
    Patient's Age in AS form (or left out), Patient Orientation present (type 2C for every image
    without an Image Orientation, as for 2-D radiographs: empty when the source had none)."""
    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in ds:
        group = elem.tag.group
        if group in (0x0002, 0x7FE0) or 0x6000 <= group <= 0x60FF or group >= 0xFFFA or elem.tag.is_private:
            continue  # file meta, pixel data, overlays and private elements are not copied
        out.add(elem)
    out.file_meta = getattr(ds, "file_meta", Dataset())
    if "PatientAge" in out:
        age = fix_age(out.PatientAge)
        if age is None:
            del out.PatientAge
        else:
            out.PatientAge = age
    if "PatientOrientation" not in out:
        out.PatientOrientation = None
    return out


@dataclass
class Source:
    """One DICOM radiograph: ``ds`` its cleaned header, ``display`` its first frame as displayed
    (VOI LUT or window applied, MONOCHROME1 inverted: air dark), float32 in [0, 1]."""

    ds: Any
    display: np.ndarray
    name: str

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
    def load(cls, source: Any, max_pixels: int | None = None) -> Source:
        """A source from a path or a pydicom Dataset (its pixels decoded as ``predict`` decodes them)."""
        if isinstance(source, (str, Path)):
            return cls.read(source, max_pixels)
        from pydicom.dataset import Dataset

        if not isinstance(source, Dataset):
            raise PneumoscopeError(f"expected the source DICOM as a path or a pydicom Dataset, got {type(source).__name__}")
        import io

        from ..data.dicom import read_dicom_dataset

        buf = io.BytesIO()
        source.save_as(buf, enforce_file_format=False)
        buf.seek(0)
        name = str(source.get("SOPInstanceUID", "") or "dataset")
        img, _, _ = read_dicom_dataset(buf, name, max_pixels)
        return cls.of(source, img, name)

    @classmethod
    def of(cls, ds: Any, display: np.ndarray, name: str) -> Source:
        """A source from a dataset already read and its displayed pixels; checks what results need."""
        for key in REQUIRED:
            if not str(ds.get(key, "") or "").strip():
                raise PneumoscopeError(f"{name}: has no {key} ({_TAG[key]}); a DICOM result must reference it, "
                                       "so none is written")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        if display.shape != (rows, cols):
            raise PneumoscopeError(f"{name}: pixels of shape {display.shape} but Rows x Columns {rows} x {cols}")
        return cls(clean_header(ds), display, name)

    @property
    def frames(self) -> int:
        """Frames in the source (results are about the first)."""
        return int(self.ds.get("NumberOfFrames", 1) or 1)

    def spacing(self) -> tuple[float, float, str] | None:
        """Row and column spacing in mm and the attribute they came from: Pixel Spacing (calibrated
        to the patient) before Imager Pixel Spacing (at the detector); None without either."""
        for key in ("PixelSpacing", "ImagerPixelSpacing"):
            value = self.ds.get(key)
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError, IndexError):
                continue
            if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
                return row, col, key
        return None


_TAG = {"StudyInstanceUID": "0020,000D", "SeriesInstanceUID": "0020,000E", "SOPInstanceUID": "0008,0018",
        "SOPClassUID": "0008,0016"}
