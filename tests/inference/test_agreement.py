"""When two probability maps give the same answer (inference/agreement.py)."""

import numpy as np

from pneumoscope.inference.agreement import masks_agree


def test_pixels_at_the_threshold_are_not_a_mismatch():
    ref = np.array([[0.50001, 0.2, 0.9]], np.float32)
    assert masks_agree(np.array([[0.49999, 0.2, 0.9]], np.float32), ref)  # undecided pixel
    assert not masks_agree(np.array([[0.50001, 0.6, 0.9]], np.float32), ref)  # a decided one flipped
    assert masks_agree(np.array([[0.50002, 0.2, 0.88]], np.float32), ref, thresholds=(0.5, 0.85))
    assert masks_agree(ref, ref, thresholds=(0.3, 0.5, 0.7))
