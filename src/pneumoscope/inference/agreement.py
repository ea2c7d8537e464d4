"""When two probability maps give the same answer: what the backend choice and the ONNX export's
parity check both hold a candidate to (against eager float32 PyTorch)."""

from __future__ import annotations

import numpy as np

DICE_MIN = 0.995
FP32_TOLERANCE = 1e-4
BAND = 1e-3  # probabilities this close to a threshold are undecided: no precision is expected to agree there


def masks_agree(prob: np.ndarray, ref: np.ndarray, thresholds: tuple[float, ...] = (0.5,), band: float = BAND) -> bool:
    """Do two probability maps give the same masks at every threshold, where the float32 reference is
    decided? Pixels within ``band`` of a threshold (0.50001 against 0.49999) are not decided by any
    precision, so they are not counted."""
    for t in thresholds:
        decided = np.abs(ref - t) > band
        if ((prob > t) != (ref > t))[decided].any():
            return False
    return True
