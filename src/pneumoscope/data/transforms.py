"""The paper's preprocessing P = Tn o Taug o Tr (Eq. 3), one implementation for every caller.

- Tr: :func:`resize_image` / :func:`resize_mask` to the model size, then :func:`to_uint8`
  (done once per image in the cache for training, per batch for inference).
- Taug: :func:`augmentation`, an albumentations pipeline (small shift/scale/rotate,
  brightness and contrast jitter, optional horizontal flip), training only.
- Tn: :func:`standardize`, zero mean and unit variance per image.

:func:`model_input` is Tr + Tn for inference: the dataset, the predictor, the ONNX export's
parity inputs and the stage-2 feature extractor all go through these functions.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] image to uint8."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a float image to ``size`` x ``size`` (area when shrinking, linear when growing)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if img.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(img.astype(np.float32, copy=False), (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a 0/1 mask: a pixel is foreground when at least half of its area was."""
    return (resize_image(mask.astype(np.float32), size) >= 0.5).astype(np.uint8)


def standardize(image: np.ndarray) -> np.ndarray:
    """Tn: float32 image with zero mean and unit variance (per image)."""
    x = image.astype(np.float32)
    return (x - x.mean()) / max(float(x.std()), 1e-6)


def to_model_size(img: np.ndarray, size: int) -> np.ndarray:
    """Tr: a float [0, 1] (or uint8) image as uint8 at ``size`` x ``size``, as the cache stores it."""
    if img.dtype == np.uint8:
        if img.shape == (size, size):
            return img
        img = img.astype(np.float32) / 255.0
    return to_uint8(resize_image(img, size))


def model_input(images_u8: np.ndarray) -> np.ndarray:
    """Tn of a stack of uint8 images (N, S, S): the network input (N, 1, S, S) float32."""
    return np.stack([standardize(im)[None] for im in images_u8]).astype(np.float32, copy=False)


def augmentation(hflip: bool = False) -> Any:
    """Taug: training-time augmentation applied jointly to image and mask (uint8 in, uint8 out):
    an albumentations ``Compose`` (imported here: prediction never needs it)."""
    import albumentations as A

    ops: list = [
        A.Affine(scale=(0.92, 1.08), translate_percent=(-0.05, 0.05), rotate=(-8, 8),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.6),
    ]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops, seed=0)
