"""Results as DICOM objects in the source radiograph's study, for a PACS and its viewers.

For one DICOM radiograph and its :class:`~pneumoscope.inference.predictor.Prediction`:

- ``seg``: a BINARY DICOM Segmentation on the source's stored pixel grid (:mod:`.seg`);
- ``sr``: a Comprehensive 3D SR following TID 1500 with the finding, P(pneumothorax), the
  decision threshold and the lesion area (:mod:`.sr`);
- ``sc``: an RGB Secondary Capture of the radiograph as displayed with the contour and the
  probability burned in, for viewers that cannot show a SEG (:mod:`.capture`).

:func:`dicom_results` builds them, :func:`write_results` writes them; ``predict --dicom-out``,
the HTTP server and ``pneumoscope listen`` call these two.
"""

from __future__ import annotations

from typing import Any

from .identity import KINDS, Algorithm, parse_kinds

__all__ = ["KINDS", "Algorithm", "dicom_results", "parse_kinds", "result_name", "write_results"]


def __getattr__(name: str) -> Any:
    """The builders on first use: they bring highdicom and pydicom's code tables (~0.13 s), which a
    prediction that writes no DICOM (it only names its :class:`Algorithm`) never needs."""
    if name in ("dicom_results", "result_name", "write_results"):
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
