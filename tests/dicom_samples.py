"""DICOM files for the conformance tests: pydicom's bundled test files, and one real radiograph
encoded in every transfer syntax (by imagecodecs, pydicom and our own reader nowhere involved)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def bundled(name: str = "*.dcm") -> list[Path]:
    """pydicom's own test files shipped in its wheel (never the ones it would download)."""
    return sorted(PYDICOM_FILES.glob(name))


def radiograph12(size: int = 256) -> np.ndarray:
    """A 12-bit chest radiograph: a real SIIM image when the samples are present, else a phantom,
    with its 8-bit values spread over 12 bits plus a little noise (so all 4096 levels matter)."""
    from tests.conftest import SHARED

    sample = sorted((SHARED / "siim-sample" / "png_images").glob("*.png"))
    if sample:
        import cv2

        img = cv2.resize(cv2.imread(str(sample[0]), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA)
    else:
        from pneumoscope.data.synth import render

        img = render(size, True, np.random.default_rng(7)).image
    noise = np.random.default_rng(0).integers(0, 16, img.shape)
    return (img.astype(np.uint16) * 16 + noise).astype(np.uint16)


def write(path: Path, pixels: np.ndarray, syntax: str, frame: bytes | None = None, bits_stored: int = 12,
          photometric: str = "MONOCHROME2", meta: bool = True, **extra) -> Path:
    """A single-frame greyscale DICOM of ``pixels`` in transfer syntax ``syntax``: native (``frame``
    None; pydicom encodes RLE and deflate itself) or encapsulated ``frame`` bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, RLELossless, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientSex, ds.PatientAge, ds.ViewPosition = "DX", "p12", "M", "018M", "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    if frame is not None:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
    else:
        big = UID(syntax) == "1.2.840.10008.1.2.2"
        ds.PixelData = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder(">" if big else "<"))).tobytes()
        if UID(syntax) == RLELossless:
            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
            ds.compress(RLELossless, encoding_plugin="pydicom")
    if meta:
        ds.save_as(path, enforce_file_format=True)
    else:  # ACR-NEMA style: no preamble, no file meta, implicit VR little endian
        del ds.file_meta
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


LOSSLESS = {  # name -> (transfer syntax, encoder of the 12-bit frame or None for a native encoding)
    "explicit_le": ("1.2.840.10008.1.2.1", None),
    "implicit_le": ("1.2.840.10008.1.2", None),
    "explicit_be": ("1.2.840.10008.1.2.2", None),
    "deflated": ("1.2.840.10008.1.2.1.99", None),
    "rle": ("1.2.840.10008.1.2.5", None),
    "jpeg_lossless_sv1": ("1.2.840.10008.1.2.4.70", lambda a, ic: ic.jpeg8_encode(a, lossless=True, predictor=1, bitspersample=12)),
    "jpeg_lossless_p14": ("1.2.840.10008.1.2.4.57", lambda a, ic: ic.jpeg8_encode(a, lossless=True, predictor=3, bitspersample=12)),
    "jpeg_ls_lossless": ("1.2.840.10008.1.2.4.80", lambda a, ic: ic.jpegls_encode(a, level=0)),
    "j2k_lossless": ("1.2.840.10008.1.2.4.90", lambda a, ic: ic.jpeg2k_encode(a, level=0, codecformat="j2k", reversible=True)),
    "htj2k_lossless": ("1.2.840.10008.1.2.4.201", lambda a, ic: ic.htj2k_encode(a, level=0)),
}
LOSSY = {
    "jpeg_extended_12bit": ("1.2.840.10008.1.2.4.51", lambda a, ic: ic.jpeg8_encode(a, level=95, bitspersample=12)),
    "jpeg_ls_near_lossless": ("1.2.840.10008.1.2.4.81", lambda a, ic: ic.jpegls_encode(a, level=2)),
    "j2k_lossy": ("1.2.840.10008.1.2.4.91", lambda a, ic: ic.jpeg2k_encode(a, level=80, codecformat="j2k", reversible=False)),
    "htj2k_lossy": ("1.2.840.10008.1.2.4.203", lambda a, ic: ic.htj2k_encode(a, level=0.0005, reversible=False)),
}


def encoded_set(folder: Path, names: dict | None = None) -> dict[str, Path]:
    """The 12-bit radiograph written once per encoding into ``folder``; skips without imagecodecs."""
    ic = pytest.importorskip("imagecodecs", reason="imagecodecs (test extra) encodes the conformance files")
    folder.mkdir(parents=True, exist_ok=True)
    pixels = radiograph12()
    out = {}
    for name, (syntax, encoder) in (names or {**LOSSLESS, **LOSSY}).items():
        out[name] = write(folder / f"{name}.dcm", pixels, syntax, None if encoder is None else bytes(encoder(pixels, ic)))
    return out


def deflate_bomb(path: Path, rows: int, cols: int, pixel_bytes: int) -> Path:
    """A Deflated Explicit VR Little Endian DICOM whose header says ``rows`` x ``cols`` (8-bit) while its
    pixel data inflates to ``pixel_bytes`` zeros: a few MB on disk. Streamed through zlib, so making
    a 2 GiB bomb never holds 2 GiB."""
    import struct
    import zlib

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_dataset(head, ds)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        m = DicomBytesIO()
        write_file_meta_info(m, meta)
        fh.write(m.getvalue())
        fh.write(z.compress(head.getvalue() + b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<I", pixel_bytes)))
        chunk, left = bytes(1 << 20), pixel_bytes
        while left:
            fh.write(z.compress(chunk[: min(left, len(chunk))]))
            left -= min(left, len(chunk))
        fh.write(z.flush())
    return path


def siim_pixels(size: int | None = None, index: int = 0) -> np.ndarray:
    """A real SIIM-ACR radiograph (8-bit) when the samples are present, else a phantom; optionally resized
    (read once per size and index: the tables of odd headers make hundreds of files of a few)."""
    return _siim_pixels(size, index).copy()


@functools.lru_cache(maxsize=64)
def _siim_pixels(size: int | None, index: int) -> np.ndarray:
    from tests.conftest import SHARED

    sample = sorted((SHARED / "siim-sample" / "png_images").glob("*.png"))
    if sample:
        import cv2

        img = cv2.imread(str(sample[index % len(sample)]), cv2.IMREAD_GRAYSCALE)
    else:
        from pneumoscope.data.synth import render

        img = render(256, True, np.random.default_rng(index)).image
    if size is not None:
        import cv2

        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def siim_dicom(path: Path, variant: str = "siim", study_uid: str | None = None, index: int = 0, **extra) -> Path:
    """A chest radiograph as a hospital would send it, from a real SIIM-ACR image. ``variant``:

    - ``siim``: the header SIIM-ACR's own DICOMs have (Secondary Capture, Modality CR, Patient's
      Age ``38``, one-part patient name, Pixel Spacing 0.168 mm) and their encoding, JPEG Baseline;
    - ``mono1``: DX, 12-bit MONOCHROME1 (stored values inverted), a window, Imager Pixel Spacing only;
    - ``j2k``: CR, 12-bit JPEG 2000 lossless, no pixel spacing at all;
    - ``jpegls_odd``: DX, an odd size (301 x 237) in JPEG-LS lossless, Pixel Spacing.
    """
    import imagecodecs
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    img8 = siim_pixels(None if variant == "siim" else 256, index)
    if variant == "jpegls_odd":
        import cv2

        img8 = cv2.resize(img8, (237, 301), interpolation=cv2.INTER_AREA)
    sc, dx, cr = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = {"siim": sc, "mono1": dx, "j2k": cr, "jpegls_odd": dx}[variant]
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "19010101", "000000.00", "", ""
    ds.Modality = "CR" if variant in ("siim", "j2k") else "DX"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"case{index}", f"p{index}", "", "M"
    ds.PatientAge = "38" if variant == "siim" else "045Y"
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), generate_uid()
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "", 1, 1, ""
    if variant == "siim":
        ds.ConversionType = "WSD"
    ds.SamplesPerPixel, ds.Rows, ds.Columns = 1, *img8.shape
    if variant == "siim":
        ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = "MONOCHROME2", 8, 8, 7
        ds.PixelSpacing = [0.168, 0.168]
        pixels, syntax, frame = img8, "1.2.840.10008.1.2.4.50", imagecodecs.jpeg8_encode(img8, level=95)
        ds.LossyImageCompression = "01"
    else:
        px12 = img8.astype(np.uint16) * 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        if variant == "mono1":
            px12 = 4095 - px12
            ds.PhotometricInterpretation, ds.WindowCenter, ds.WindowWidth = "MONOCHROME1", 2048, 4096
            ds.ImagerPixelSpacing = [0.139, 0.139]
            syntax, frame = "1.2.840.10008.1.2.1", None
        else:
            ds.PhotometricInterpretation = "MONOCHROME2"
            if variant == "jpegls_odd":
                ds.PixelSpacing = [0.2, 0.2]
                syntax, frame = "1.2.840.10008.1.2.4.80", imagecodecs.jpegls_encode(px12, level=0)
            else:
                syntax, frame = "1.2.840.10008.1.2.4.90", imagecodecs.jpeg2k_encode(px12, level=0, codecformat="j2k", reversible=True)
        pixels = px12
    ds.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    if frame is None:
        ds.PixelData = np.ascontiguousarray(pixels.astype("<u2")).tobytes()
    else:
        ds.PixelData = encapsulate([bytes(frame)])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


SIIM_VARIANTS = ("siim", "mono1", "j2k", "jpegls_odd")
