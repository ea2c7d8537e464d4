"""The burned-in overlay: an RGB Secondary Capture of the radiograph as displayed, for viewers
that cannot show a DICOM SEG."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .algorithm import SERIES, equipment

if TYPE_CHECKING:  # pragma: no cover
    from .algorithm import Algorithm
    from .source import Source

LABEL = "AI result - not for diagnosis"
CONTOUR_RGB = (255, 40, 40)
TEXT_RGB = (255, 230, 0)


def caption(prediction: Any, algorithm: Algorithm) -> str:
    """The result in one line: decision, P(pneumothorax) and threshold (or the mask area without stage 2)."""
    if prediction.p_pneumothorax is None:
        return f"mask {int(prediction.mask.sum())} px (no stage-2 classifier)"
    word = "PNEUMOTHORAX" if prediction.decision == "pneumothorax" else "no pneumothorax"
    return f"{word}: P = {prediction.p_pneumothorax:.2f} (threshold {algorithm.threshold:.2f})"


def burn_in(display: np.ndarray, mask: np.ndarray, lines: list[str]) -> np.ndarray:
    """RGB uint8 of ``display`` (float [0, 1], air dark) with the mask's contour and ``lines`` of
    text on a dark band at the top left, scaled to the image."""
    grey = np.clip(np.rint(display * 255.0), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    side = max(display.shape)
    thick = max(2, int(round(side / 300)))
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, CONTOUR_RGB, thick)
    scale = max(0.4, side / 1400)
    font, weight = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(scale * 2)))
    sizes = [cv2.getTextSize(t, font, scale, weight)[0] for t in lines]
    pad = int(round(12 * scale))
    line_h = max(h for _, h in sizes) + pad
    width = min(display.shape[1], max(w for w, _ in sizes) + 2 * pad)
    height = min(display.shape[0], line_h * len(lines) + pad)
    rgb[:height, :width] //= 4  # darken the band so the text reads on any radiograph
    for k, text in enumerate(lines):
        cv2.putText(rgb, text, (pad, (k + 1) * line_h), font, scale, TEXT_RGB, weight, cv2.LINE_AA)
    return rgb


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
