"""Checks and scaling shared by the image readers: size limits, value range, one-line messages."""

from __future__ import annotations

import numpy as np

from ..errors import PneumoscopeError, TooLargeError

MAX_PIXELS = 178_956_970  # Pillow's decompression-bomb limit: larger images are refused before decoding
MIN_SIDE = 32  # a radiograph is at least this many pixels on each side


def check_pixels(name: str, width: int, height: int, max_pixels: int | None = MAX_PIXELS, min_side: int = 0) -> None:
    """Refuse an image by its size (read from its header, before decoding it)."""
    if max_pixels is not None and width * height > max_pixels:
        raise TooLargeError(f"{name}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more than the "
                            f"limit of {max_pixels / 1e6:.0f} megapixels")
    if min(width, height) < min_side:
        raise PneumoscopeError(f"{name}: {width}x{height} pixels is too small for a radiograph (at least {min_side} px a side)")


def scale01(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Values mapped linearly to float32 [0, 1]: from [lo, hi] when given, else from the array's own
    minimum and maximum (a constant image becomes 0)."""
    a = np.asarray(arr, dtype=np.float64)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
