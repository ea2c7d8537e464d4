"""The paper's preprocessing P = Tn o Taug o Tr (Eq. 3) as albumentations pipelines.

Tr (resize) happens once, in the cache. Taug is a small shift/scale/rotate, brightness
and contrast jitter and an optional horizontal flip; Tn standardises each image to
zero mean and unit variance.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np


def augmentation(hflip: bool = False) -> A.Compose:
    """Training-time augmentation applied jointly to image and mask (uint8 in, uint8 out)."""
    ops: list = [
        A.Affine(scale=(0.92, 1.08), translate_percent=(-0.05, 0.05), rotate=(-8, 8),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.6),
    ]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops, seed=0)


def standardize(image: np.ndarray) -> np.ndarray:
    """Tn: float32 image with zero mean and unit variance (per image)."""
    x = image.astype(np.float32)
    return (x - x.mean()) / max(float(x.std()), 1e-6)
