"""The burned-in overlay: an RGB Secondary Capture of the radiograph as displayed, for viewers
that cannot show a DICOM SEG."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..pictures import result_caption, with_caption
from .algorithm import SERIES, equipment

if TYPE_CHECKING:  # pragma: no cover
    from .algorithm import Algorithm
    from .source import Source

LABEL = "AI result - not for diagnosis"
CONTOUR_RGB = (255, 40, 40)
TEXT_RGB = (255, 230, 0)


def caption(prediction: Any, algorithm: Algorithm) -> str:
    """The result in one line (:func:`pneumoscope.pictures.result_caption`)."""
    return result_caption(prediction.decision, prediction.p_pneumothorax, algorithm.threshold, int(prediction.mask.sum()))


def burn_in(display: np.ndarray, mask: np.ndarray, lines: list[str]) -> np.ndarray:
    """RGB uint8 of ``display`` (float [0, 1], air dark) with the mask's contour and ``lines`` of
    text on a dark band at the top left, scaled to the image."""
    grey = np.clip(np.rint(display * 255.0), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    thick = max(2, int(round(max(display.shape) / 300)))
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, CONTOUR_RGB, thick)
    return with_caption(rgb, lines, TEXT_RGB)


def secondary_capture(source: Source, prediction: Any, algorithm: Algorithm, content: str = "") -> Any:
    """The RGB Secondary Capture in the source's study (burned-in annotation: YES); ``content``: a
    digest of what is burned in, which its SOP Instance UID is derived from."""
    import highdicom as hd

    uid = str(source.ds.SOPInstanceUID)
    pixels = burn_in(source.display, prediction.mask, [LABEL, caption(prediction, algorithm)])
    number, label = SERIES["sc"]
    orientation = tuple(str(v) for v in (source.ds.get("PatientOrientation") or ()))
    spacing = source.spacing()
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source.ds, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=algorithm.uid(uid, "sc", "series"), series_number=number,
        sop_instance_uid=algorithm.uid(uid, "sc", content=content), instance_number=1, manufacturer=algorithm.manufacturer,
        pixel_spacing=None if spacing is None else (spacing[0], spacing[1]),
        patient_orientation=("L", "F"),  # highdicom insists on one; the source's (often empty) replaces it below
        transfer_syntax_uid="1.2.840.10008.1.2.1", contributing_equipment=[equipment(algorithm)],
        series_description=label)
    sc.PatientOrientation = list(orientation) if len(orientation) == 2 else None
    sc.Laterality = source.ds.get("Laterality") or None  # General Series, type 2C: a chest is no paired structure
    sc.BurnedInAnnotation, sc.ManufacturerModelName, sc.SoftwareVersions = "YES", algorithm.model[:64], algorithm.full_version
    return sc
