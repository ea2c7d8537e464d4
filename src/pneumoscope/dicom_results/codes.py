"""The coded concepts the results use (SNOMED CT, DICOM, UCUM), and the project's own few."""

from __future__ import annotations

from pydicom.sr.coding import Code

PNEUMOTHORAX = Code("36118008", "SCT", "Pneumothorax")
ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically abnormal structure")
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("2667000", "SCT", "Absent")
CHEST = Code("51185008", "SCT", "Thorax")
CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
AREA = Code("42798000", "SCT", "Area")
CERTAINTY = Code("111012", "DCM", "Certainty of Finding")  # P(pneumothorax) from stage 2, unit "no units"
AI = Code("123110", "DCM", "Artificial Intelligence")
# CID 7005 has no "Processing Algorithm" purpose; Processing Equipment is the standard's closest code.
PROCESSING = Code("109102", "DCM", "Processing Equipment")
DEVICE = Code("121007", "DCM", "Device")
NO_UNITS = Code("1", "UCUM", "no units")
MM2 = Code("mm2", "UCUM", "square millimeter")
PIXELS = Code("{pixels}", "UCUM", "pixels")

# Local codes (coding scheme 99PNSC: "99" marks a private scheme in DICOM) for what no standard code says.
LOCAL = "99PNSC"
THRESHOLD = Code("THRESHOLD", LOCAL, "Decision threshold of P(pneumothorax)")
AREA_METHOD = {  # how the lesion area was measured: which spacing the source gave
    "PixelSpacing": Code("AREA-PS", LOCAL, "Area from Pixel Spacing (patient plane)"),
    "ImagerPixelSpacing": Code("AREA-IPS", LOCAL, "Area from Imager Pixel Spacing (detector plane)"),
    None: Code("AREA-PX", LOCAL, "Area in pixels (the source gives no pixel spacing)"),
}
# When stage 1 and stage 2 disagree (pneumoscope.soundness.disagreement): a qualifier of the finding.
AGREEMENT = Code("STAGE-AGREE", LOCAL, "Agreement of segmentation and classification")
DISAGREEMENT = {"positive, not localised": Code("POS-NOT-LOC", LOCAL, "Positive, not localised"),
                "segmented, classified normal": Code("SEG-CLS-NORMAL", LOCAL, "Segmented, classified normal")}
