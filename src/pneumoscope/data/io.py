"""Reading radiographs into one float32 grey channel in [0, 1]: DICOM (:mod:`.dicom`) and
PNG/JPEG/BMP/TIFF (Pillow); recognising them by content; masks; listing image files.

PNG/TIFF with more than 8 bits: the significant bits the file declares (PNG ``sBIT``) set the
range (12-bit data stored in 16 bits is divided by 4095); without that declaration, a 16-bit
container is scaled by the image's own minimum and maximum, so 12-bit data keeps its 4096
grey levels instead of 16.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PneumoscopeError, TooLargeError, UnsupportedFormatError, one_line
from .dicom import read_dicom
from .pixels import MAX_PIXELS, MIN_SIDE, check_pixels, scale01

__all__ = ["MAX_PIXELS", "MIN_SIDE", "check_file", "check_pixels", "one_line", "read_dicom", "read_image", "read_image_bytes",
           "read_mask", "read_raster", "sniff", "is_dicom", "list_images", "encode_png"]

DICOM_SUFFIXES = {".dcm", ".dicom"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
IMAGE_SUFFIXES = DICOM_SUFFIXES | RASTER_SUFFIXES


def looks_like_dicom(head: bytes) -> bool:
    """DICOM by its first bytes: the ``DICM`` marker at byte 128, or (ACR-NEMA style, no preamble
    and no file meta) a dataset that starts with an element of group 0x0008 or 0x0002."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00") and not head.startswith(b"\x89PNG")


def is_dicom(path: Path) -> bool:
    """True when the file is DICOM: by suffix, or by its first bytes (see :func:`looks_like_dicom`)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return looks_like_dicom(head)


def _png_significant_bits(im: Image.Image) -> int | None:
    """The bit depth a PNG declares significant in its ``sBIT`` chunk (greyscale: one byte), if any."""
    import struct

    fp = getattr(im, "fp", None)
    if getattr(im, "format", None) != "PNG" or fp is None:
        return None
    pos = fp.tell()
    try:
        fp.seek(8)
        while True:
            head = fp.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"sBIT":
                return fp.read(length)[0]
            if kind in (b"IDAT", b"IEND"):
                return None
            fp.seek(length + 4, 1)
    except (OSError, struct.error, IndexError):
        return None
    finally:
        fp.seek(pos)


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
            sbit = _png_significant_bits(im)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32)
                if sbit:
                    return scale01(arr, 0.0, float(2**sbit - 1))
                return scale01(arr)  # a 16-bit container without a declared depth: its own range
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


def check_file(path: str | Path) -> Path:
    """``path`` when it is a file to read; one line for a broken symbolic link, a missing file, a folder."""
    path = Path(path)
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            raise PneumoscopeError(f"{path}: a broken symbolic link (to {os.readlink(path)}, which does not exist)")
        raise PneumoscopeError(f"{path}: file not found" if not path.exists() else f"{path}: is a folder, not an image file")
    return path


def read_image(path: str | Path, max_pixels: int | None = MAX_PIXELS, min_side: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Read any supported radiograph: float32 array in [0, 1], shape (H, W), plus metadata.

    Images over ``max_pixels`` are refused from their header, before decoding; images with a
    side under ``min_side`` are refused too."""
    path = check_file(path)
    if is_dicom(path):
        return read_dicom(str(path), str(path), max_pixels, min_side)
    return read_raster(path, str(path), max_pixels, min_side), {}


def sniff(data: bytes) -> str:
    """The image format from its bytes (not its name): ``dicom``, ``png`` or ``jpeg``; else raise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if looks_like_dicom(data[:132]):
        return "dicom"
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


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A mask as a 1-bit PNG: ten times faster to write than 8 bits and a few hundred bytes. Read
    as 8-bit grey (``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``, Pillow's ``.convert("L")``) it is
    0/255 like the SIIM-ACR PNG masks; Pillow's plain ``Image.open`` gives mode "1" (booleans)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, dtype=np.uint8) * 255,
                           [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise PneumoscopeError(f"could not encode a mask PNG of shape {mask.shape}")
    return buf.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """A uint8 picture (grey or BGR) as JPEG: for pictures people look at, 8x faster than PNG."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PneumoscopeError(f"could not encode a JPEG of shape {image.shape}")
    return buf.tobytes()


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files. A broken symbolic
    link with an image suffix is listed too, so that reading it fails (or ``--skip-bad`` lists it)
    instead of it vanishing without a word."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.name.lower().endswith(tuple(IMAGE_SUFFIXES))  # ".png" too
                              and (f.is_file() or (f.is_symlink() and not f.exists()))))
        elif p.is_file() or (p.is_symlink() and not p.exists()):
            out.append(p)
        else:
            raise PneumoscopeError(f"{p}: no such file or folder")
    return out
