"""The mask as a BINARY DICOM Segmentation (highdicom) on the source's own stored pixel grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import codes
from .algorithm import SERIES, algorithm_identification, equipment

if TYPE_CHECKING:  # pragma: no cover
    from .algorithm import Algorithm
    from .source import Source


def segmentation(source: Source, mask: np.ndarray, algorithm: Algorithm, content: str = "") -> Any:
    """A BINARY SEG with one segment (pneumothorax) referencing the source's first frame; ``content``:
    a digest of the mask, which its SOP Instance UID is derived from."""
    import highdicom as hd

    uid = str(source.ds.SOPInstanceUID)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Pneumothorax",
        segmented_property_category=codes.ABNORMAL_STRUCTURE, segmented_property_type=codes.PNEUMOTHORAX,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(algorithm),
        anatomic_regions=[codes.CHEST])
    number, label = SERIES["seg"]
    seg = hd.seg.Segmentation(
        source_images=[source.ds], pixel_array=mask.astype(np.uint8)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=algorithm.uid(uid, "seg", "series"), series_number=number,
        sop_instance_uid=algorithm.uid(uid, "seg", content=content), instance_number=1,
        manufacturer=algorithm.manufacturer, manufacturer_model_name=algorithm.model[:64],
        software_versions=algorithm.full_version, device_serial_number=algorithm.weights_id,
        content_label="PNEUMOTHORAX", content_description=label[:64], series_description=label,
        contributing_equipment=[equipment(algorithm)])
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "FrameOfReferenceUID" not in source.ds and "PixelMeasuresSequence" in shared:
        # A projection radiograph has no slice thickness, which highdicom's reader requires of pixel
        # measures; the SEG lies on the source's own grid, whose spacing the source gives.
        del shared.PixelMeasuresSequence
    if "PatientOrientation" not in seg:  # General Image, type 2C: needed (empty) without an Image Orientation
        seg.PatientOrientation = source.ds.get("PatientOrientation") or None
    return seg
