"""Results as DICOM objects in the source radiograph's study, for a PACS and its viewers.

For one DICOM radiograph and its :class:`~pneumoscope.inference.predictor.Prediction`:

- ``seg``: a BINARY DICOM Segmentation on the source's stored pixel grid (:mod:`.seg`);
- ``sr``: a Comprehensive 3D SR following TID 1500 with the finding, P(pneumothorax), the
  decision threshold and the lesion area (:mod:`.sr`);
- ``sc``: an RGB Secondary Capture of the radiograph as displayed with the contour and the
  probability burned in, for viewers that cannot show a SEG (:mod:`.capture`).

Every attribute they copy from the source passes :mod:`.header` first. :func:`make_results` is the
one entry (``predict --dicom-out``, the HTTP server, ``pneumoscope listen`` and
``Prediction.to_dicom`` call it): it never raises for a file's content; :func:`write_results`
writes what it made.
"""

from __future__ import annotations

from typing import Any

from .algorithm import KINDS, Algorithm, parse_kinds

__all__ = ["KINDS", "Algorithm", "Results", "make_results", "parse_kinds", "result_name", "write_results"]


def __getattr__(name: str) -> Any:
    """The builders on first use: they bring highdicom and pydicom's code tables (~0.13 s), which a
    prediction that writes no DICOM (it only names its :class:`Algorithm`) never needs."""
    if name in ("Results", "make_results", "result_name", "write_results"):
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
