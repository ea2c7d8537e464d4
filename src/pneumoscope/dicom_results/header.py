"""The source's header as the results may copy it: the one step between a radiograph's header and
every SEG, SR and overlay made of it.

Results copy the source's patient and study attributes (the Patient, General Study, Patient Study
and Clinical Trial modules), its equipment (as Contributing Equipment) and a few image attributes.
Real files break them in many ways: attributes missing, dates of year 0, names of 200 characters
or with two values, Latin-1 bytes without a Specific Character Set, UIDs of 82 characters. Each
attribute a result copies is checked here against its value representation (length, characters,
date and time validity, UID syntax, numbers), its multiplicity and, where the standard enumerates
them, its values, and then kept, emptied or dropped by the type it has in the results:

- type 1 (the four UIDs a result must reference): kept as it is, however it reads, and said when
  invalid: a result must name the source's study, series and instance exactly (a source without
  them gets no results: :mod:`.source`);
- type 2 (Patient's Name and ID, Birth Date, Sex; Study Date, Time, ID, Accession Number, Referring
  Physician): present, left empty when unusable (never shortened or guessed: an identity that is
  changed is said);
- everything else: dropped when unusable; an optional module that loses a type-1 attribute is left
  out whole.

Text is decoded in the source's character set and the results are written in UTF-8 (``ISO_IR 192``)
when any kept value needs more than ASCII. What was changed is one short phrase per attribute,
naming the attribute, never its value (the notes reach logs).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom.valuerep import MAX_VALUE_LEN

REFERENCES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber", "PatientOrientation")
PATIENT_STUDY_MODULES = ("patient", "clinical-trial-subject", "general-study", "patient-study", "clinical-trial-study")
OPTIONAL_MODULES = ("clinical-trial-subject", "patient-study", "clinical-trial-study")
EQUIPMENT = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions", "DeviceSerialNumber", "InstitutionName",
             "InstitutionalDepartmentName", "InstitutionAddress", "StationName", "AcquisitionDateTime",
             "AcquisitionDate", "AcquisitionTime")
IMAGE = ("Modality", "PixelSpacing", "ImagerPixelSpacing", "Laterality", "ImageLaterality", "BodyPartExamined",
         "ViewPosition", "SeriesNumber", "InstanceNumber", "SeriesDate", "SeriesTime", "SeriesDescription",
         "ImageOrientationPatient", "ImagePositionPatient", "FrameOfReferenceUID", "SliceThickness", "SpacingBetweenSlices")
# What decoding needed: already proven by the pixels, passed through unchanged.
PIXEL_DESCRIPTION = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
                     "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation")
ENUMS = {  # enumerated values (PS3.3) of the copied attributes that have them
    "PatientSex": {"M", "F", "O"}, "PatientIdentityRemoved": {"YES", "NO"}, "QualityControlSubject": {"YES", "NO"},
    "SmokingStatus": {"YES", "NO", "UNKNOWN"}, "PatientSexNeutered": {"ALTERED", "UNALTERED"},
    "PregnancyStatus": {1, 2, 3, 4}, "Laterality": {"R", "L"}, "ImageLaterality": {"R", "L", "U", "B"},
    "TypeOfPatientID": {"TEXT", "RFID", "BARCODE"},
}
ORIENTATION = re.compile(r"^[APRLHF]{1,3}$")  # Patient Orientation of a human (PS3.3 C.7.6.1.1.1)
MAX_LENGTH = {**MAX_VALUE_LEN, "AS": 4, "DA": 8, "DT": 26, "TM": 14}  # pydicom's, and the fixed-length VRs it leaves out
PATTERN = {
    "AE": re.compile(r"^[\x20-\x5b\x5d-\x7e]*$"),
    "AS": re.compile(r"^\d\d\d[DWMY]$"),
    "CS": re.compile(r"^[A-Z0-9 _]*$"),
    "DS": re.compile(r"^ *[+\-]?(\d+|\d+\.\d*|\.\d+)([eE][+\-]?\d+)? *$"),
    "IS": re.compile(r"^ *[+\-]?\d+ *$"),
    "DA": re.compile(r"^(\d{4})(\d\d)(\d\d)$"),
    "TM": re.compile(r"^([01]\d|2[0-3])([0-5]\d((60|[0-5]\d)(\.\d{1,6})?)?)? *$"),
    "DT": re.compile(r"^(\d{4})((\d\d)((\d\d)(([01]\d|2[0-3])([0-5]\d((60|[0-5]\d)(\.\d{1,6})?)?)?)?)?)?([+\-]\d{4})? *$"),
    "UI": re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"),
}
ACR_NEMA_DATE = re.compile(r"^(\d{4})\.(\d\d)\.(\d\d)$")  # the ACR-NEMA form of a date, still in old files
ACR_NEMA_TIME = re.compile(r"^(\d\d):(\d\d)(?::(\d\d)(\.\d{1,6})?)?$")
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # ST, LT, UT may hold TAB, LF, FF, CR
NUMBER_RANGE = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF)}
UTF8 = "ISO_IR 192"


@dataclass(frozen=True)
class Header:
    """The cleaned header (a pydicom Dataset without pixels) and what was changed to make it."""

    ds: Any
    notes: tuple[str, ...]


@lru_cache(maxsize=1)
def module_attributes() -> dict[str, tuple[str, str]]:
    """keyword -> (module, type) of every root attribute of the patient and study modules (highdicom's tables)."""
    from highdicom._standard_utils import get_module_attribute_map

    table = get_module_attribute_map()
    out: dict[str, tuple[str, str]] = {}
    for module in PATIENT_STUDY_MODULES:
        for item in table[module]:
            if not item["path"]:
                out.setdefault(str(item["keyword"]), (module, str(item["type"])))
    return out


def copied_keywords() -> tuple[str, ...]:
    """Every attribute a result may take from its source (what :func:`clean` checks)."""
    return tuple(dict.fromkeys((*REFERENCES, *module_attributes(), *EQUIPMENT, *IMAGE, *TYPE2)))


def result_type(keyword: str) -> str:
    """The attribute's type in the results: ``1`` (kept as it is), ``2`` (emptied) or ``3`` (dropped)."""
    return "1" if keyword in REFERENCES else "2" if keyword in TYPE2 else "3"


def tag_text(keyword: str) -> str:
    """An attribute's tag as the standard writes it: ``0010,0010``."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"


def describe(keyword: str) -> str:
    """An attribute as people read it: ``Patient's Name (0010,0010)``."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"{dictionary_description(tag)} ({tag_text(keyword)})" if tag is not None else keyword


def _vm_allows(spec: str, n: int) -> bool:
    """Whether ``n`` values fit a dictionary multiplicity such as ``1``, ``2``, ``1-3``, ``1-n``, ``2-2n``."""
    m = re.fullmatch(r"(\d+)(?:-(\d*)n|-(\d+))?", spec or "")
    if not m:
        return True
    lo = int(m.group(1))
    if m.group(2) is not None:  # "1-n", "2-2n", "3-3n": at least lo, a multiple of the step
        step = int(m.group(2) or 1)
        return n >= lo and n % step == 0
    if m.group(3) is not None:
        return lo <= n <= int(m.group(3))
    return n == lo


def _text_problem(vr: str, text: str) -> str | None:
    """What is wrong with one text value for its VR (None: nothing)."""
    if "\ufffd" in text:
        return "holds bytes its character set cannot decode"
    if (CONTROL_TEXT if vr in ("ST", "LT", "UT") else CONTROL).search(text):
        return "holds control characters"
    if vr not in ("ST", "LT", "UT", "UC", "UR") and "\\" in text:
        return "holds a backslash, which separates values"
    limit = MAX_LENGTH.get(vr)
    if limit is not None and len(text.rstrip(" ") if vr != "UI" else text.rstrip("\0")) > limit:
        return f"is {len(text)} characters long, more than {vr} allows ({limit})"
    if vr == "PN":
        groups = text.split("=")
        if len(groups) > 3 or any(len(g) > 64 for g in groups) or any(g.count("^") > 4 for g in groups):
            return "is not a person name (at most 3 groups of 5 components, 64 characters each)"
    pattern = PATTERN.get(vr)
    if pattern is not None:
        value = text.rstrip("\0") if vr == "UI" else text.strip() if vr in ("DA", "DS", "IS", "AS") else text.rstrip(" ")
        m = pattern.match(value)
        if not m:
            return {"UI": "is not a valid UID (digits and dots, no component with a leading zero)",
                    "DA": "is not a date (YYYYMMDD)", "TM": "is not a time (HHMMSS.FFFFFF)",
                    "DT": "is not a date-time", "DS": "is not a decimal number", "IS": "is not an integer",
                    "AS": "is not an age (nnnD/W/M/Y)"}.get(vr, f"holds characters {vr} does not allow")
        if vr == "DA" or (vr == "DT" and m.group(2)):
            try:
                datetime.date(int(m.group(1)), int(m.group(2) if vr == "DA" else m.group(3)),
                              int(m.group(3) if vr == "DA" else (m.group(5) or 1)))
            except ValueError:
                return "is not a calendar date"
            if int(m.group(1)) < 1:
                return "is not a calendar date (year 0)"
        if vr == "DS" and not _finite(value):
            return "is not a finite number"
        if vr == "IS" and not -(2 ** 31) <= int(value) <= 2 ** 31 - 1:
            return "is out of the range of IS"
    return None


def _finite(text: str) -> bool:
    try:
        return abs(float(text)) < float("inf")
    except ValueError:
        return False


def value_problem(keyword: str, vr: str, vm: str, value: Any) -> str | None:
    """What is wrong with an attribute's value (None: nothing; an empty value is fine here)."""
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence

    if value is None or value == "" or (isinstance(value, (list, MultiValue, Sequence)) and len(value) == 0):
        return None
    if vr == "SQ":
        for k, item in enumerate(value):
            for elem in item:
                if elem.tag.is_private:
                    continue
                why = value_problem(elem.keyword, elem.VR, "", elem.value)
                if why:
                    return f"item {k + 1}: {elem.name} {why}"
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    if vm and not _vm_allows(vm, len(values)):
        return f"has {len(values)} value{'s' if len(values) != 1 else ''} where the standard allows {vm.replace('-n', ' or more')}"
    for v in values:
        if vr in TEXT_VRS:
            why = _text_problem(vr, str(v))
        elif vr in NUMBER_RANGE:
            lo, hi = NUMBER_RANGE[vr]
            why = None if isinstance(v, int) and lo <= v <= hi else f"is out of the range of {vr}"
        elif vr in ("FL", "FD"):
            why = None if isinstance(v, (int, float)) and abs(float(v)) < float("inf") else "is not a finite number"
        else:
            why = None
        if why:
            return why
        allowed = ENUMS.get(keyword)
        if allowed is not None and (str(v).strip() if isinstance(v, str) else v) not in allowed:
            return f"is not one of the values the standard defines ({', '.join(sorted(map(str, allowed)))})"
        if keyword == "PatientOrientation" and not ORIENTATION.match(str(v)):
            return "is not a patient direction (A, P, R, L, H, F)"
    return None


AGE = re.compile(r"^\d{3}[DWMY]$")


def fix_age(value: Any) -> str | None:
    """A Patient's Age as the AS value representation wants it (``038Y``): SIIM's ``38`` padded and
    given years; ``45 Y`` or ``045y`` tidied; anything else unusable (None)."""
    text = re.sub(r"\s+", "", str(value or "")).upper()
    if AGE.match(text):
        return text
    m = re.fullmatch(r"(\d{1,3})([DWMY]?)", text)
    return f"{int(m.group(1)):03d}{m.group(2) or 'Y'}" if m else None


def _repair(keyword: str, vr: str, value: Any) -> tuple[Any, str | None]:
    """A value in an old or loose form that says the same thing in the standard's form, and a note."""
    if vr == "AS":
        fixed = fix_age(value)
        if fixed is not None and fixed != str(value):
            return fixed, None  # SIIM-ACR's "38": the same age in the AS form (not worth a note)
    if vr in ("DA", "TM") and isinstance(value, str):
        m = (ACR_NEMA_DATE if vr == "DA" else ACR_NEMA_TIME).match(value.strip())
        if m:
            fixed = "".join(g or "" for g in m.groups()) if vr == "DA" else m.group(1) + m.group(2) + (m.group(3) or "") + (m.group(4) or "")
            return fixed, "was in the ACR-NEMA form: written as the standard's"
    if vr == "CS" and isinstance(value, str) and value != value.upper() and keyword in ENUMS:
        return value.upper(), None  # "m" for Patient's Sex
    return value, None


def _plain(value: Any, vr: str) -> Any:
    """A value as plain Python text or numbers (decoded names, no original bytes kept), ready for
    another character set."""
    from pydicom.multival import MultiValue

    if vr == "SQ":
        from pydicom.sequence import Sequence

        return Sequence([_copy_item(item) for item in value])
    if isinstance(value, (list, tuple, MultiValue)):
        return [_plain(v, vr) for v in value]
    if vr == "PN" and value is not None:
        return str(value)
    if vr in ("DS", "IS") and value is not None and not isinstance(value, str):
        original = getattr(value, "original_string", None)
        return original.strip() if isinstance(original, str) else str(value)
    return value


def _copy_item(item: Any) -> Any:
    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in item:
        if not elem.tag.is_private:
            out.add_new(elem.tag, elem.VR, _plain(elem.value, elem.VR))
    return out


def _texts(value: Any) -> list[str]:
    """Every text in a value (multi-values and sequence items included)."""
    from pydicom.dataset import Dataset
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence
    from pydicom.valuerep import PersonName

    if isinstance(value, (str, PersonName)):
        return [str(value)]
    if isinstance(value, Dataset):
        return [t for elem in value for t in _texts(elem.value)]
    if isinstance(value, (list, tuple, MultiValue, Sequence)):
        return [t for v in value for t in _texts(v)]
    return []


def clean(ds: Any) -> Header:
    """The header the results may copy, and one phrase per attribute changed (see the module's text).
    pydicom's own warnings on these values pass on (the CLI quiets them: the notes say what matters)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset

    out, notes = Dataset(), []
    charset = _charset(ds, notes)
    for keyword in copied_keywords():
        tag = tag_for_keyword(keyword)
        if tag not in ds:
            continue
        vr, value, why, repaired = _judge(ds, keyword, tag)
        kind = result_type(keyword)
        if why is None:
            out.add_new(tag, vr, _plain(value, vr))
            if repaired:
                notes.append(f"{describe(keyword)} {repaired}")
        elif kind == "1":
            out.add_new(tag, vr, value)
            notes.append(f"{describe(keyword)} {why}: referenced as it is (a validator will say so)")
        elif kind == "2":
            out.add_new(tag, vr, None)
            notes.append(f"{describe(keyword)} {why}: left empty in the results")
        else:
            notes.append(f"{describe(keyword)} {why}: left out of the results")
    _complete(out, notes)
    for keyword in PIXEL_DESCRIPTION:
        if keyword in ds:
            out[keyword] = ds[keyword]
    _set_charset(out, charset, notes)
    return Header(out, tuple(notes))


def _judge(ds: Any, keyword: str, tag: int) -> tuple[str, Any, str | None, str | None]:
    """An attribute of ``ds``: its VR, its value (in the standard's form where an old form says the
    same), what is wrong with it (None: nothing) and a note on a repair."""
    from pydicom.datadict import dictionary_VM, dictionary_VR

    try:
        elem = ds[tag]
        value, vr = elem.value, elem.VR
    except Exception as exc:  # pydicom could not convert the stored bytes (a DS of "abc")
        return dictionary_VR(tag), None, f"cannot be read ({exc.__class__.__name__})", None
    if vr != dictionary_VR(tag) and vr in ("UN", "OB", "OW"):
        return dictionary_VR(tag), None, f"is stored with the value representation {vr}", None
    value, repaired = _repair(keyword, vr, value)
    return vr, value, value_problem(keyword, vr, dictionary_VM(tag), value), repaired


def _charset(ds: Any, notes: list[str]) -> str | None:
    """The source's Specific Character Set as given (None: none), noting a term pydicom does not know."""
    from pydicom.charset import python_encoding

    try:
        elem = ds.get("SpecificCharacterSet")
    except Exception:  # bytes that are no CS value
        elem = None
    if not elem:
        return None
    terms = [str(t).strip() for t in (elem if not isinstance(elem, str) else [elem])]
    unknown = [t for t in terms if t and t not in python_encoding and t.replace(" ", "_") not in python_encoding]
    if unknown:
        notes.append(f"Specific Character Set (0008,0005) names an unknown character set ({unknown[0][:16]}): "
                     "text was read as Latin-1")
    declared = [t for t in terms if t and t not in ("ISO_IR 6", "ISO 2022 IR 6")]
    return "\\".join(terms) if declared else None


def _set_charset(out: Any, source_charset: str | None, notes: list[str]) -> None:
    """UTF-8 when a kept value needs more than ASCII (no Specific Character Set otherwise)."""
    wide = any(ord(c) > 127 for elem in out for t in _texts(elem.value) for c in t)
    if "SpecificCharacterSet" in out:
        del out.SpecificCharacterSet
    if wide:
        out.SpecificCharacterSet = UTF8
        if not source_charset:
            notes.append("non-ASCII text without a Specific Character Set (0008,0005) was read as Latin-1 "
                         "(ISO_IR 100); the results declare UTF-8")


def _complete(out: Any, notes: list[str]) -> None:
    """Type-2 attributes present (empty where missing); an optional module without its type-1
    attributes left out whole; a Frame of Reference only with the geometry that uses it."""
    for keyword in TYPE2:
        if keyword not in out:
            setattr(out, keyword, None)
    modules = module_attributes()
    for module in OPTIONAL_MODULES:
        present = [k for k, (m, _) in modules.items() if m == module and k in out]
        required = [k for k, (m, t) in modules.items() if m == module and t == "1"]
        missing = [k for k in required if k not in out or out[k].value in (None, "")]
        if present and missing:
            for k in present:
                del out[k]
            notes.append(f"the {module.replace('-', ' ')} module lacks {describe(missing[0])}: left out of the results")
        elif present:
            for k, (m, t) in modules.items():
                if m == module and t == "2" and k not in out:
                    setattr(out, k, None)
    if "FrameOfReferenceUID" in out and not ("ImageOrientationPatient" in out and "ImagePositionPatient" in out):
        del out.FrameOfReferenceUID  # a projection radiograph: no plane geometry the results could use
    if not str(out.get("Modality", "") or ""):
        out.Modality = "OT"  # never copied into a result (each has its own); the builders only look at it
