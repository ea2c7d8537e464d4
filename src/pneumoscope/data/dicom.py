"""Reading a DICOM radiograph: any transfer syntax pydicom can decode, legacy files without a file
meta header, and the standard's display pipeline, into one float32 grey image in [0, 1].

Decoders (pydicom plugins): uncompressed little/big endian, implicit/explicit VR and deflated are
pydicom's own; RLE Lossless through pylibjpeg-rle (or pydicom's); JPEG Baseline, Extended,
Lossless (process 14, SV1) and JPEG-LS lossless/near-lossless through pylibjpeg-libjpeg; JPEG 2000
and HTJ2K, lossless and lossy, through pylibjpeg-openjpeg. Pillow is pydicom's last resort.

Pixel pipeline, in the order PS3.4 N.2 defines:

1. the first frame of a multi-frame image (the metadata says how many there were);
2. colour to grey: palette colour through its LUT, YBR converted to RGB by pydicom, then
   luminance (ITU-R BT.601 weights);
3. modality LUT: Modality LUT Sequence, or rescale slope/intercept (pydicom's);
4. VOI LUT: the VOI LUT Sequence (on integer values, as its table lookup requires) or the
   window (the first one when several are given), normalised by the output range the standard
   gives it; without either, the image's own value range;
5. MONOCHROME1 inverted, so that air is always dark.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, BinaryIO

import numpy as np

from ..errors import PneumoscopeError, one_line
from .dicom_bounds import DEFLATED, check_codestream, open_bounded
from .pixels import check_pixels, scale01

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def parse_age(value: Any) -> float:
    """A DICOM age string (``045Y``, ``018M``, ``003W``, ``010D``) or a plain number, in years; NaN when unknown."""
    text = str(value or "").strip().upper()
    if not text:
        return math.nan
    unit = AGE_UNITS.get(text[-1])
    digits = text[:-1] if unit is not None else text
    try:
        number = float(digits)
    except ValueError:
        return math.nan
    return round(number * (unit if unit is not None else 1.0), 2)


def _open(source: Any, name: str, max_pixels: int | None = None) -> Any:
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd but readable files: what matters is whether the pixels decode
        bounded = open_bounded(source, name, max_pixels)  # a deflated dataset is inflated here, within its declared size
        ds = pydicom.dcmread(bounded, force=True)  # force: ACR-NEMA files without preamble or file meta
    if bounded is not source:
        ds.file_meta.TransferSyntaxUID = DEFLATED  # what the file was; its pixels are plain now
    if "TransferSyntaxUID" not in ds.file_meta:  # infer it from how the dataset was encoded
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None:
            implicit, little = getattr(ds, "is_implicit_VR", True), getattr(ds, "is_little_endian", True)
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if not any(k in ds for k in PIXEL_KEYWORDS):
        raise PneumoscopeError(f"{name}: not a readable DICOM image (it holds no pixel data)")
    if not any(len(ds[k].value or b"") for k in PIXEL_KEYWORDS if k in ds):
        raise PneumoscopeError(f"{name}: not a readable DICOM image (no pixel data: its pixel data element is empty)")
    if str(ds.get("SOPClassUID", "")) == RT_DOSE:
        raise PneumoscopeError(f"{name}: an RT dose grid, not a radiograph")
    return ds


def _first_frame(ds: Any) -> np.ndarray:
    from pydicom.pixels import pixel_array

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixel_array(ds, index=0 if frames > 1 else None)


def _grey(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, bool]:
    """One channel, and whether it is a colour image made grey (then the stored values are display values)."""
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr[..., :3].astype(np.float64) @ LUMA, True
    if arr.ndim != 2:
        raise PneumoscopeError(f"expected one 2-D frame, got pixel data of shape {arr.shape}")
    return arr, False


def _window_range(ds: Any) -> tuple[float, float]:
    """The output range of pydicom's windowing (PS3.3 C.11.2.1.2): [y_min, y_max]."""
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        lo, hi = -float(2 ** (int(ds.BitsStored) - 1)), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None and not ds.get("ModalityLUTSequence"):
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi


def _display(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    """Modality LUT, then VOI LUT or window, as [0, 1]; and a sentence saying which VOI was used."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(arr, ds)
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        if not np.issubdtype(values.dtype, np.integer):
            values = np.rint(values).astype(np.int64)  # the LUT is indexed by integer values
        out = apply_voi(values, ds, index=0)
        top = float(2 ** int(item.LUTDescriptor[2]) - 1)
        n = len(ds.VOILUTSequence)
        return np.clip(out / top, 0, 1), f"VOI LUT 1 of {n}" + (f" ({item.LUTExplanation})" if "LUTExplanation" in item else "")
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centres, widths = ds["WindowCenter"], ds["WindowWidth"]
        c = float(centres.value[0] if centres.VM > 1 else centres.value)
        w = float(widths.value[0] if widths.VM > 1 else widths.value)
        lo, hi = _window_range(ds)
        out = apply_windowing(values, ds, index=0)
        n = max(centres.VM, 1)
        func = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        return np.clip((out - lo) / (hi - lo), 0, 1), f"window centre {c:g} width {w:g} ({func}, 1 of {n})"
    return scale01(values), "none (the image's own value range)"


def read_dicom(source: str | BinaryIO, name: str | None = None, max_pixels: int | None = None,
               min_side: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """A DICOM radiograph (path or binary file object) as float32 [0, 1] with air dark, and its metadata."""
    img, meta, _ = read_dicom_dataset(source, name, max_pixels, min_side)
    return img, meta


def read_dicom_from_dataset(ds: Any, name: str, max_pixels: int | None = None,
                            min_side: int = 0) -> tuple[np.ndarray, dict[str, Any], Any]:
    """As :func:`read_dicom_dataset`, of a pydicom Dataset in memory: encoded as its file would be,
    then read the same way (the same bounds, the same display pipeline)."""
    import io

    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=False)
    except Exception as exc:  # a dataset pydicom cannot encode (no pixel data, values of the wrong type)
        raise PneumoscopeError(f"{name}: the pydicom Dataset cannot be encoded ({exc.__class__.__name__}: {one_line(exc)})") from exc
    buf.seek(0)
    return read_dicom_dataset(buf, name, max_pixels, min_side)


def read_dicom_dataset(source: str | BinaryIO, name: str | None = None, max_pixels: int | None = None,
                       min_side: int = 0) -> tuple[np.ndarray, dict[str, Any], Any]:
    """As :func:`read_dicom`, with the pydicom dataset it was read from (for results written as DICOM)."""
    name = name or str(source)
    try:
        ds = _open(source, name, max_pixels)
        check_pixels(name, int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), max_pixels, min_side)
        check_codestream(ds, name, max_pixels)  # what a JPEG / JPEG 2000 decoder would allocate
        raw = _first_frame(ds)
        arr, colour = _grey(raw, ds)
        if colour:  # stored values are display values: scale by the stored bit depth
            img, window = scale01(arr, 0.0, float(2 ** int(ds.get("BitsStored", 8)) - 1)), "none (colour image, luminance)"
        else:
            img, window = _display(arr, ds)
    except PneumoscopeError as exc:
        text = str(exc)
        raise type(exc)(text if text.startswith(name) else f"{name}: {text}") from exc
    except Exception as exc:  # pydicom and its plugins raise many types for broken or unsupported files
        raise PneumoscopeError(f"{name}: not a readable DICOM image ({exc.__class__.__name__}: {one_line(exc)})") from exc
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    img = np.asarray(img, dtype=np.float32)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    if not np.isfinite(img).all():
        raise PneumoscopeError(f"{name}: decoded pixels are not finite")
    return img, metadata(ds, window), ds


def metadata(ds: Any, window: str = "") -> dict[str, Any]:
    """What the viewer, ``predict`` and stage 2 keep of a DICOM header."""
    ts = ds.file_meta.get("TransferSyntaxUID")
    return {
        "patient_id": str(ds.get("PatientID", "") or ""),
        "sex": str(ds.get("PatientSex", "") or "").strip().upper(),
        "age": parse_age(ds.get("PatientAge", "")),
        "view": str(ds.get("ViewPosition", "") or "").strip().upper(),
        "modality": str(ds.get("Modality", "") or ""),
        "photometric": str(ds.get("PhotometricInterpretation", "") or ""),
        "transfer_syntax": ts.name if ts is not None else "",
        "window": window,
        "frames": int(ds.get("NumberOfFrames", 1) or 1),
    }
