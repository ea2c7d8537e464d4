"""The finding as a Comprehensive 3D SR following TID 1500 (Measurement Report)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..soundness import disagreement
from . import codes
from .algorithm import SERIES, equipment

if TYPE_CHECKING:  # pragma: no cover
    from .algorithm import Algorithm
    from .source import Source


def lesion_area(source: Source, mask_area_px: int) -> tuple[float, Any, Any]:
    """The mask's area in mm² when the source gives a pixel spacing, else in pixels; with its unit
    and the method code saying which spacing was used."""
    spacing = source.spacing()
    if spacing is None:
        return float(mask_area_px), codes.PIXELS, codes.AREA_METHOD[None]
    row, col, key = spacing
    return round(mask_area_px * row * col, 2), codes.MM2, codes.AREA_METHOD[key]


def finding_present(prediction: Any) -> bool:
    """The finding the results report: stage 2's decision, or without stage 2 a non-empty mask."""
    return prediction.decision == "pneumothorax" if prediction.decision is not None else bool(prediction.mask.any())


def structured_report(source: Source, prediction: Any, algorithm: Algorithm, seg: Any | None) -> Any:
    """TID 1500 with the algorithm as device observer, one measurement group: the finding
    (pneumothorax present/absent; when the stages disagree, a second qualifier saying how), P(pneumothorax)
    and the threshold, the lesion area, and the SEG segment it refers to (a planar ROI group with a SEG; an image-level group without one)."""
    import highdicom as hd

    uid = str(source.ds.SOPInstanceUID)
    present = finding_present(prediction)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.uid(algorithm.weights_id, "device"), name=algorithm.name,
            manufacturer_name=algorithm.manufacturer, model_name=algorithm.model[:64],
            serial_number=algorithm.weights_id))
    algo = hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.full_version)
    measurements = []
    if prediction.p_pneumothorax is not None:
        measurements.append(hd.sr.Measurement(name=codes.CERTAINTY, value=round(float(prediction.p_pneumothorax), 6),
                                              unit=codes.NO_UNITS, algorithm_id=algo))
        measurements.append(hd.sr.Measurement(name=codes.THRESHOLD, value=round(float(algorithm.threshold), 6),
                                              unit=codes.NO_UNITS, algorithm_id=algo))
    area, unit, method = lesion_area(source, int(prediction.mask.sum()) if present else 0)
    content = "|".join(str(v) for v in (present, prediction.p_pneumothorax and round(float(prediction.p_pneumothorax), 6),
                                        algorithm.threshold, area, unit.value, seg.SOPInstanceUID if seg is not None else ""))
    measurements.append(hd.sr.Measurement(name=codes.AREA, value=area, unit=unit, method=method, algorithm_id=algo))
    qualifiers = [hd.sr.QualitativeEvaluation(codes.PNEUMOTHORAX, codes.PRESENT if present else codes.ABSENT)]
    apart = disagreement(prediction.decision, int(prediction.mask.sum()))
    if apart is not None:  # the two stages disagree: said as a coded qualifier, not only in words
        qualifiers.append(hd.sr.QualitativeEvaluation(codes.AGREEMENT, codes.DISAGREEMENT[apart]))
        content += f"|{apart}"
    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=algorithm.uid(uid, "sr", "finding"), identifier="Pneumothorax"),
        finding_type=codes.PNEUMOTHORAX, algorithm_id=algo, measurements=measurements,
        qualitative_evaluations=qualifiers,
        finding_sites=[hd.sr.FindingSite(codes.CHEST)])
    if seg is not None:
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegmentationFrame(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=1, segment_number=1,
                source_image=hd.sr.SourceImageForSegmentation.from_source_image(source.ds)), **common)
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source.ds)], **common)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.CHEST_XRAY, imaging_measurements=[group])
    number, label = SERIES["sr"]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source.ds] + ([seg] if seg is not None else []), content=report,
        series_instance_uid=algorithm.uid(uid, "sr", "series"), series_number=number,
        sop_instance_uid=algorithm.uid(uid, "sr", content=content), instance_number=1,
        manufacturer=algorithm.manufacturer, is_complete=True, is_final=False, is_verified=False,
        series_description=label, contributing_equipment=[equipment(algorithm)])
    _drop_segment_number(sr.ContentSequence)
    sr.ManufacturerModelName, sr.SoftwareVersions = algorithm.model[:64], algorithm.full_version
    return sr


def _drop_segment_number(items: Any) -> None:
    """A SEG frame referenced by number already names its segment; the standard forbids saying
    both (Referenced Segment Number is 1C: only without Referenced Frame Number), highdicom says both."""
    for item in items:
        for ref in item.get("ReferencedSOPSequence", []):
            if "ReferencedFrameNumber" in ref and "ReferencedSegmentNumber" in ref:
                del ref.ReferencedSegmentNumber
        if "ContentSequence" in item:
            _drop_segment_number(item.ContentSequence)
