"""Reading radiographs: DICOM (pydicom) and PNG/JPEG (Pillow) into float32 in [0, 1].

DICOM handling follows the standard display pipeline: modality LUT (rescale
slope/intercept), then the VOI LUT or window, then MONOCHROME1 inversion so that
air is always dark. Sex, age and view position are returned as metadata.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PneumoscopeError, TooLargeError, UnsupportedFormatError

MAX_PIXELS = 178_956_970  # Pillow's decompression-bomb limit: larger images are refused before decoding
MIN_SIDE = 32  # a radiograph is at least this many pixels on each side

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


def one_line(exc: BaseException) -> str:
    """An exception's message in words on one line: pydicom's run over several lines, and
    Pillow's name the in-memory file object (``<_io.BytesIO object at 0x...>``), which says nothing."""
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "the data", str(exc))
    return " ".join(text.split()) or exc.__class__.__name__


def check_pixels(name: str, width: int, height: int, max_pixels: int | None = MAX_PIXELS, min_side: int = 0) -> None:
    """Refuse an image by its size (read from its header, before decoding it)."""
    if max_pixels is not None and width * height > max_pixels:
        raise TooLargeError(f"{name}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more than the "
                            f"limit of {max_pixels / 1e6:.0f} megapixels")
    if min(width, height) < min_side:
        raise PneumoscopeError(f"{name}: {width}x{height} pixels is too small for a radiograph (at least {min_side} px a side)")


def read_dicom(path: Path | BinaryIO, name: str | None = None, max_pixels: int | None = MAX_PIXELS,
               min_side: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a DICOM radiograph (path or binary file object) as float32 [0, 1] (air dark) plus its metadata."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    name = name or str(path)
    try:
        ds = pydicom.dcmread(path if not isinstance(path, Path) else str(path))
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise PneumoscopeError(f"{name}: not a readable DICOM image (it holds no pixel data)")
        check_pixels(name, int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), max_pixels, min_side)
        raw = ds.pixel_array
    except PneumoscopeError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise PneumoscopeError(f"{name}: not a readable DICOM image ({exc.__class__.__name__}: {one_line(exc)})") from exc
    if raw.ndim == 3 and raw.shape[-1] in (3, 4):
        raw = raw[..., :3].mean(axis=-1)
    elif raw.ndim != 2:
        raise PneumoscopeError(f"{name}: expected a single 2-D frame, got pixel array of shape {raw.shape}")
    arr = apply_modality_lut(raw, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds)
    img = _scale01(np.asarray(arr))
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        img = 1.0 - img
    return img, _dicom_metadata(ds)


def read_raster(path: Path | BinaryIO, name: str | None = None, max_pixels: int | None = MAX_PIXELS,
                min_side: int = 0) -> np.ndarray:
    """Read PNG/JPEG (greyscale, RGB, RGBA, 8 or 16 bit; path or binary file object) as one
    float32 channel in [0, 1]."""
    name = name or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"{name}: more than the limit of {MAX_PIXELS / 1e6:.0f} megapixels ({one_line(exc)})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PneumoscopeError(f"{name}: not a readable image ({one_line(exc)})") from exc
    try:
        with im:
            check_pixels(name, im.width, im.height, max_pixels, min_side)
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PneumoscopeError(f"{name}: not a readable image ({one_line(exc)})") from exc
    except MemoryError as exc:
        raise TooLargeError(f"{name}: not enough memory to decode it ({im.width}x{im.height} pixels)") from exc


def read_image(path: str | Path, max_pixels: int | None = MAX_PIXELS, min_side: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Read any supported radiograph: float32 array in [0, 1], shape (H, W), plus metadata.

    Images over ``max_pixels`` are refused from their header, before decoding; images with a
    side under ``min_side`` are refused too."""
    path = Path(path)
    if not path.is_file():
        raise PneumoscopeError(f"{path}: file not found" if not path.exists() else f"{path}: is a folder, not an image file")
    if is_dicom(path):
        return read_dicom(path, str(path), max_pixels, min_side)
    return read_raster(path, str(path), max_pixels, min_side), {}


def sniff(data: bytes) -> str:
    """The image format from its bytes (not its name): ``dicom``, ``png`` or ``jpeg``; else raise."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    raise UnsupportedFormatError("unsupported file: not DICOM, PNG or JPEG (checked by content)")


def read_image_bytes(data: bytes, name: str = "upload", max_pixels: int | None = MAX_PIXELS,
                     min_side: int = 0) -> tuple[np.ndarray, dict[str, Any], str]:
    """Decode an in-memory DICOM/PNG/JPEG (format sniffed from the bytes); returns image, metadata, format."""
    kind = sniff(data)
    buf = io.BytesIO(data)
    if kind == "dicom":
        img, meta = read_dicom(buf, name, max_pixels, min_side)
        return img, meta, kind
    return read_raster(buf, name, max_pixels, min_side), {}, kind


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


def encode_png(image: np.ndarray, level: int = 3) -> bytes:
    """A uint8 image (grey, BGR or BGRA) encoded as PNG (zlib ``level`` 0-9: 3 is fast and small enough)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise PneumoscopeError(f"could not encode a PNG of shape {image.shape}")
    return buf.tobytes()


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
