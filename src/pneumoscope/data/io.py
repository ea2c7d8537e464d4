"""Reading radiographs: DICOM (pydicom) and PNG/JPEG (Pillow) into float32 in [0, 1].

DICOM handling follows the standard display pipeline: modality LUT (rescale
slope/intercept), then the VOI LUT or window, then MONOCHROME1 inversion so that
air is always dark. Sex, age and view position are returned as metadata.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PneumoscopeError, UnsupportedFormatError

DICOM_SUFFIXES = {".dcm", ".dicom"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
IMAGE_SUFFIXES = DICOM_SUFFIXES | RASTER_SUFFIXES


def is_dicom(path: Path) -> bool:
    """True when the file is DICOM: by suffix, or by the ``DICM`` marker at byte 128."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _scale01(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float32)
    return (arr - lo) / (hi - lo)


def _dicom_metadata(ds: Any) -> dict[str, Any]:
    age = str(getattr(ds, "PatientAge", "") or "")
    digits = "".join(ch for ch in age if ch.isdigit())
    return {
        "patient_id": str(getattr(ds, "PatientID", "") or ""),
        "sex": str(getattr(ds, "PatientSex", "") or ""),
        "age": float(digits) if digits else float("nan"),
        "view": str(getattr(ds, "ViewPosition", "") or ""),
    }


def read_dicom(path: Path | BinaryIO) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a DICOM radiograph (path or binary file object) as float32 [0, 1] (air dark) plus its metadata."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path if not isinstance(path, Path) else str(path))
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken files
        raise PneumoscopeError(f"{path}: not a readable DICOM image ({exc.__class__.__name__}: {exc})") from exc
    if raw.ndim == 3 and raw.shape[-1] in (3, 4):
        raw = raw[..., :3].mean(axis=-1)
    elif raw.ndim != 2:
        raise PneumoscopeError(f"{path}: expected a single 2-D frame, got pixel array of shape {raw.shape}")
    arr = apply_modality_lut(raw, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds)
    img = _scale01(np.asarray(arr))
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        img = 1.0 - img
    return img, _dicom_metadata(ds)


def read_raster(path: Path | BinaryIO) -> np.ndarray:
    """Read PNG/JPEG (greyscale, RGB, RGBA, 8 or 16 bit; path or binary file object) as one
    float32 channel in [0, 1]."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32)
                bits = 16 if arr.max() > 255 else 8
                return np.clip(arr / (2**bits - 1), 0.0, 1.0)
            if im.mode == "RGBA" or im.mode == "LA" or (im.mode == "P" and "transparency" in im.info):
                # Composite onto black: transparent pixels carry no radiograph.
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, rgba)
            grey = im.convert("L")
            return np.asarray(grey, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PneumoscopeError(f"{path}: not a readable image ({exc})") from exc


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read any supported radiograph: float32 array in [0, 1], shape (H, W), plus metadata."""
    path = Path(path)
    if not path.is_file():
        raise PneumoscopeError(f"{path}: file not found")
    if is_dicom(path):
        return read_dicom(path)
    return read_raster(path), {}


def sniff(data: bytes) -> str:
    """The image format from its bytes (not its name): ``dicom``, ``png`` or ``jpeg``; else raise."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    raise UnsupportedFormatError("unsupported file: not DICOM, PNG or JPEG (checked by content)")


def read_image_bytes(data: bytes, name: str = "upload") -> tuple[np.ndarray, dict[str, Any], str]:
    """Decode an in-memory DICOM/PNG/JPEG (format sniffed from the bytes); returns image, metadata, format."""
    kind = sniff(data)
    buf = io.BytesIO(data)
    try:
        if kind == "dicom":
            img, meta = read_dicom(buf)
            return img, meta, kind
        return read_raster(buf), {}, kind
    except PneumoscopeError as exc:
        raise type(exc)(f"{name}: " + str(exc).split(": ", 1)[-1]) from exc


def read_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask PNG (0/255 or 0/1) as uint8 0/1.

    Raises PneumoscopeError for unreadable files, masks with other values, or a size
    that differs from ``expected_shape``.
    """
    path = Path(path)
    if not path.is_file():
        raise PneumoscopeError(f"{path}: mask file not found")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PneumoscopeError(f"{path}: not a readable mask image ({exc})") from exc
    values = np.unique(arr)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        raise PneumoscopeError(
            f"{path}: mask is not binary (values {values[:6].tolist()}...; expected 0/255 or 0/1)"
        )
    if expected_shape is not None and arr.shape != tuple(expected_shape):
        raise PneumoscopeError(
            f"{path}: mask size {arr.shape[1]}x{arr.shape[0]} differs from image size "
            f"{expected_shape[1]}x{expected_shape[0]}"
        )
    return (arr > 0).astype(np.uint8)


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise PneumoscopeError(f"{p}: no such file or folder")
    return out
