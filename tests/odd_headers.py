"""Radiographs with the headers real exports and anonymisers produce: a full, valid DX header of a
real SIIM-ACR image, and its variants (attributes deleted, emptied or made invalid, as bytes on disk,
the way another toolkit would have written them)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FULL = {  # a DX header with a value for most of what results copy (all valid)
    "SpecificCharacterSet": "ISO_IR 100", "PatientName": "Doe^Jane", "PatientID": "PID-0042",
    "IssuerOfPatientID": "HOSP", "PatientBirthDate": "19700214", "PatientBirthTime": "083000",
    "PatientSex": "F", "OtherPatientNames": "Roe^Jane", "PatientComments": "none",
    "StudyDate": "20240105", "StudyTime": "101530.25", "StudyID": "S17", "AccessionNumber": "ACC123",
    "ReferringPhysicianName": "Smith^Ann", "StudyDescription": "CHEST PA", "PhysiciansOfRecord": "Grey^Lou",
    "NameOfPhysiciansReadingStudy": "Blue^Kim", "PatientAge": "054Y", "PatientSize": "1.68", "PatientWeight": "61.5",
    "Occupation": "teacher", "AdditionalPatientHistory": "cough", "Manufacturer": "ACME Imaging",
    "ManufacturerModelName": "DX-1", "SoftwareVersions": "4.2", "DeviceSerialNumber": "SN9",
    "InstitutionName": "General Hospital", "StationName": "DX01", "AcquisitionDate": "20240105",
    "AcquisitionTime": "101600", "BodyPartExamined": "CHEST", "ViewPosition": "PA", "PixelSpacing": "0.139\\0.139",
    "SeriesDate": "20240105", "SeriesTime": "101600", "SeriesDescription": "PA",
}
INVALID_BY_VR = {  # a value each VR refuses, as another toolkit might write it
    "PN": "A" * 70, "LO": "x" * 70, "SH": "x" * 20, "DA": "20241301", "TM": "256000", "CS": "not a code!",
    "DS": "abc", "AS": "54 years", "UI": "1.02.3", "ST": "a\x00b", "LT": "a\x00b", "DT": "2024130101",
}


def raw(ds: Any, keyword: str, value: str | bytes, vr: str | None = None) -> None:
    """Put ``value`` into ``ds`` as the bytes a file would hold, past pydicom's checks."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    data = value if isinstance(value, bytes) else value.encode("latin-1")
    if len(data) % 2:
        data += b"\0" if (vr or dictionary_VR(tag)) == "UI" else b" "
    ds._dict[tag] = RawDataElement(tag, vr or dictionary_VR(tag), len(data), data, 0, False, True)


def full_dataset(size: int = 64, index: int = 3) -> Any:
    """A DX for presentation of a real SIIM-ACR radiograph (a phantom without the samples), ``size`` px."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from tests.dicom_samples import siim_pixels

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["odd", str(index)])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = (generate_uid(entropy_srcs=["odd", str(index), k]) for k in "ab")
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "DX", 1, 1, ["P", "F"]
    for key, value in FULL.items():
        raw(ds, key, value)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.ascontiguousarray(siim_pixels(size, index)).tobytes()
    return ds


def save(ds: Any, path: Path, meta: bool = True) -> Path:
    """Write ``ds`` as a file (``meta``: Part 10 with its file meta; else ACR-NEMA style, none)."""
    if meta:
        ds.save_as(path, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


def _delete(*keys: str) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        for k in keys:
            if k in ds:
                delattr(ds, k)
    return change


def _set(keyword: str, value: Any, vr: str | None = None) -> Callable[[Any], None]:
    return lambda ds: raw(ds, keyword, value, vr)


def _both(*changes: Callable[[Any], None]) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        for c in changes:
            c(ds)
    return change


# name -> (change, fragments every note of it must hold, an invalid UID attribute kept as it is or None)
ODD = {
    # real files that stopped predict --dicom-out with a traceback, and made variants
    "nhs_dx_no_birth_date": (_delete("PatientBirthDate"), (), None),
    "acr_nema_cr_no_patient_id": (_both(_delete("PatientID"), _set("StudyDate", "1993.04.12"), _set("StudyTime", "10:15:30")),
                                  ("Study Date (0008,0020) was in the ACR-NEMA form",), None),
    "gh133_date_of_year_0": (_set("StudyDate", "00000000"), ("Study Date (0008,0020) is not a calendar date",), None),
    "no_modality": (_delete("Modality"), (), None),
    "iso2022_ir87_first_value_empty": (_both(_set("SpecificCharacterSet", "\\ISO 2022 IR 87"),
                                             _set("PatientName", b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B")), (), None),
    "patient_name_two_values": (_set("PatientName", "Doe^Jane\\Roe^Jane"), ("Patient's Name (0010,0010) has 2 values",), None),
    "pixel_spacing_one_value": (_set("PixelSpacing", "0.139"), ("Pixel Spacing (0028,0030) has 1 value",), None),
    "pixel_spacing_abc_def": (_set("PixelSpacing", "abc\\def"), ("Pixel Spacing (0028,0030) is not a decimal number",), None),
    # invalid values the results inherited
    "latin1_name_no_charset": (_both(_delete("SpecificCharacterSet"), _set("PatientName", b"M\xfcller^J\xf6rg")),
                               ("read as Latin-1",), None),
    "patient_name_200_chars": (_set("PatientName", "A" * 200), ("Patient's Name (0010,0010) is not a person name",), None),
    "patient_id_90_chars": (_set("PatientID", "1" * 90), ("Patient ID (0010,0020) is 90 characters long",), None),
    "study_description_300_chars": (_set("StudyDescription", "d" * 300), ("Study Description (0008,1030) is 300",), None),
    "study_uid_82_chars": (_set("StudyInstanceUID", "1.2." + "3" * 78), ("Study Instance UID (0020,000D) is 82",),
                           "Study Instance UID"),
    "study_uid_leading_zero_fo_dicom": (_set("StudyInstanceUID", "999.999.01.23.45.6789"),
                                        ("Study Instance UID (0020,000D) is not a valid UID",), "Study Instance UID"),
    "series_uid_leading_zero": (_set("SeriesInstanceUID", "1.2.03.4"), ("Series Instance UID (0020,000E) is not a valid",),
                                "Series Instance UID"),
    # an invalid object not inherited
    "frame_of_reference_uid": (_set("FrameOfReferenceUID", "1.2.826.0.1.3680043.8.498.1"), (), None),
    # values not plausible for a radiograph
    "pixel_spacing_1e6_mm": (_set("PixelSpacing", "1e6\\1e6"), ("not plausible for a radiograph", "areas are in pixels"), None),
    "pixel_spacing_1e-9_mm": (_set("PixelSpacing", "1e-9\\1e-9"), ("not plausible for a radiograph",), None),
    # variants of the same classes
    "february_30": (_set("StudyDate", "20240230"), ("Study Date (0008,0020) is not a calendar date",), None),
    "birth_date_year_0": (_set("PatientBirthDate", "00000101"), ("Patient's Birth Date (0010,0030) is not a calendar",), None),
    "study_time_25_h": (_set("StudyTime", "250000"), ("Study Time (0008,0030) is not a time",), None),
    "acquisition_date_year_0": (_set("AcquisitionDate", "00000000"), ("Acquisition Date (0008,0022) is not a calendar",), None),
    "sex_x": (_set("PatientSex", "X"), ("Patient's Sex (0010,0040) is not one of the values",), None),
    "sex_lower_case": (_set("PatientSex", "f"), (), None),
    "name_control_character": (_set("PatientName", b"Doe\x01^Jane"), ("holds control characters",), None),
    "unknown_character_set": (_set("SpecificCharacterSet", "FOO"), ("names an unknown character set",), None),
    "utf8_declared_bad_bytes": (_both(_set("SpecificCharacterSet", "ISO_IR 192"), _set("PatientName", b"Doe^\xff\xfe")),
                                ("cannot decode",), None),
    "empty_character_set": (_set("SpecificCharacterSet", ""), (), None),
    "manufacturer_80_chars": (_set("Manufacturer", "m" * 80), ("Manufacturer (0008,0070) is 80",), None),
    "age_in_words": (_set("PatientAge", "old"), ("Patient's Age (0010,1010) is not an age",), None),
    "age_siim_style": (_set("PatientAge", "38"), (), None),
    "orientation_invalid": (_set("PatientOrientation", "X\\Y"), ("Patient Orientation (0020,0020) is not a patient",), None),
    "orientation_one_value": (_set("PatientOrientation", "P"), ("Patient Orientation (0020,0020) has 1 value",), None),
    "pixel_spacing_nan": (_set("PixelSpacing", "nan\\nan"), ("Pixel Spacing (0028,0030) is not a",), None),
    "patient_weight_abc": (_set("PatientWeight", "abc"), ("Patient's Weight (0010,1030) is not a decimal",), None),
    "clinical_trial_without_sponsor": (_set("ClinicalTrialSubjectID", "CT-7"),
                                       ("clinical trial subject module lacks Clinical Trial Sponsor Name",), None),
    "other_patient_ids_bad_item": (lambda ds: _other_ids(ds), ("Other Patient IDs Sequence (0010,1002)",), None),
    "everything_type2_missing": (_delete("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                                         "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                                         "PatientOrientation"), (), None),
    "no_file_meta": (lambda ds: None, (), None),  # written ACR-NEMA style (below)
}


def _other_ids(ds: Any) -> None:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.PatientID, item.TypeOfPatientID = "P" * 80, "TEXT"
    ds.OtherPatientIDsSequence = [item]


def odd_dicoms(folder: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Each case of :data:`ODD` written into ``folder`` as ``<name>.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, name in enumerate(names or list(ODD)):
        ds = full_dataset(index=k)
        ODD[name][0](ds)
        out[name] = save(ds, folder / f"{name}.dcm", meta=name not in ("acr_nema_cr_no_patient_id", "no_file_meta"))
    return out


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dciodvfy prints for a file (skip when dicom3tools is not installed)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, errors="replace")
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def errors_beyond(errors: list[str], kept: str | None) -> list[str]:
    """dciodvfy's errors that are not about an invalid source UID the results must reference as it is."""
    if kept is None:
        return errors
    generic = "Dicom dataset contains invalid data values"
    return [e for e in errors if kept not in e and generic not in e and "Illegal root for UID" not in e]
