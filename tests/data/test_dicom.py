"""DICOM conformance: every file of pydicom's own test suite, one real radiograph in every transfer
syntax, legacy files without file meta, the display pipeline (modality LUT, VOI, MONOCHROME1)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from pneumoscope.data.dicom import parse_age
from pneumoscope.data.io import read_image, read_image_bytes
from pneumoscope.errors import PneumoscopeError
from tests.dicom_samples import LOSSLESS, LOSSY, PYDICOM_FILES, bundled, encoded_set, radiograph12, write

# pydicom's files that are not radiographs or are broken on purpose: refused, and why (a fragment of the line).
REFUSED = {
    "ExplVR_BigEndNoMeta.dcm": "no pixel data", "ExplVR_LitEndNoMeta.dcm": "no pixel data",  # RT plans without meta
    "no_meta.dcm": "no pixel data", "no_meta_group_length.dcm": "no pixel data", "UN_sequence.dcm": "no pixel data",
    "empty_charset_LEI.dcm": "no pixel data", "priv_SQ.dcm": "no pixel data", "reportsi.dcm": "no pixel data",
    "reportsi_with_empty_number_tags.dcm": "no pixel data", "rtplan.dcm": "no pixel data",
    "rtplan_truncated.dcm": "no pixel data", "rtstruct.dcm": "no pixel data", "test-SR.dcm": "no pixel data",
    "waveform_ecg.dcm": "no pixel data",
    "rtdose.dcm": "RT dose", "rtdose_1frame.dcm": "RT dose", "rtdose_expb.dcm": "RT dose", "rtdose_expb_1frame.dcm": "RT dose",
    "rtdose_rle.dcm": "RT dose", "rtdose_rle_1frame.dcm": "RT dose", "badVR.dcm": "RT dose",
    "MR_truncated.dcm": "less than expected",  # pixel data cut short
    "JPEG-lossy.dcm": "misplaced marker",  # a 12-bit JPEG with a marker out of place (pydicom's known bad file)
    # a J2K header that says 3.8 million tiles: refused from its codestream header, before the decoder allocates
    "JPEG2000-embedded-sequence-delimiter.dcm": "its compressed data declares 3722445056x1024 pixels",
    "meta_missing_tsyntax.dcm": "Bits Allocated", "nested_priv_SQ.dcm": "Bits Allocated",  # no image description
}


@pytest.mark.parametrize("path", bundled(), ids=lambda p: p.name)
def test_every_pydicom_test_file_decodes_or_is_refused_in_one_line(path):
    if path.name in REFUSED:
        with pytest.raises(PneumoscopeError) as info:
            read_image(path)
        message = str(info.value)
        assert message.startswith(str(path)) and REFUSED[path.name] in message and "\n" not in message
        return
    img, meta = read_image(path)
    assert img.ndim == 2 and img.dtype == np.float32 and np.isfinite(img).all()
    assert 0.0 <= img.min() <= img.max() <= 1.0
    assert meta["transfer_syntax"] and meta["photometric"] and meta["frames"] >= 1


def test_the_bundled_suite_is_what_this_test_expects():
    names = {p.name for p in bundled()}
    assert set(REFUSED) <= names and len(names) - len(REFUSED) >= 50  # 52 decode with pylibjpeg's plugins


@pytest.mark.parametrize("other", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                   "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_implicit.dcm",
                                   "MR_small_padded.dcm"])
def test_lossless_encodings_of_mr_small_are_identical(other):
    np.testing.assert_array_equal(read_image(PYDICOM_FILES / other)[0], read_image(PYDICOM_FILES / "MR_small.dcm")[0])


@pytest.mark.parametrize("other,max_diff,mean_diff", [
    ("SC_rgb_jpeg_gdcm.dcm", 0, 0),  # JPEG Lossless (process 14, SV1), RGB
    ("SC_rgb_gdcm_KY.dcm", 0, 0), ("SC_rgb_rle_16bit.dcm", 0, 0), ("SC_rgb_rle_32bit.dcm", 0, 0),
    ("SC_rgb_rle_2frame.dcm", 0, 0),  # the first of two frames
    ("SC_ybr_full_422_uncompressed.dcm", 2 / 255, 0.002),  # chroma subsampled: luminance kept
    ("SC_rgb_dcmtk_+eb+cr.dcm", 2 / 255, 0.001), ("SC_rgb_dcmtk_+eb+cy+n1.dcm", 8 / 255, 0.003),
    ("SC_rgb_jpeg_dcmtk.dcm", 2 / 255, 0.002), ("SC_rgb_jpeg_lossy_gdcm.dcm", 8 / 255, 0.002),
    ("SC_rgb_jls_lossy_line.dcm", 2 / 255, 0.003), ("SC_rgb_jls_lossy_sample.dcm", 2 / 255, 0.003),
])
def test_colour_encodings_become_the_same_grey(other, max_diff, mean_diff):
    ref = read_image(PYDICOM_FILES / "SC_rgb_rle.dcm")[0]
    img = read_image(PYDICOM_FILES / other)[0]
    diff = np.abs(img - ref)
    assert diff.max() <= max_diff + 1e-6 and diff.mean() <= mean_diff + 1e-6


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    return encoded_set(tmp_path_factory.mktemp("encoded"))


@pytest.mark.parametrize("name", list(LOSSLESS))
def test_a_12bit_radiograph_in_every_lossless_syntax_decodes_identically(encoded, name):
    ref = read_image(encoded["explicit_le"])[0]
    img, meta = read_image(encoded[name])
    np.testing.assert_array_equal(img, ref)
    assert len(np.unique(img)) > 1000  # 12 bits kept, not 8
    assert meta["transfer_syntax"] == pydicom.uid.UID(LOSSLESS[name][0]).name


@pytest.mark.parametrize("name", list(LOSSY))
def test_lossy_syntaxes_stay_within_tolerance(encoded, name):
    """Stated tolerance for the lossy encodings made here: mean |difference| <= 0.005 and
    max <= 0.03 of the full grey range (the HTJ2K file is the most compressed, about 14:1)."""
    diff = np.abs(read_image(encoded[name])[0] - read_image(encoded["explicit_le"])[0])
    assert diff.mean() <= 0.005 and diff.max() <= 0.03, (diff.mean(), diff.max())


def test_files_without_preamble_and_file_meta_are_read(tmp_path):
    pixels = radiograph12(64)
    legacy = write(tmp_path / "acr_nema", pixels, "1.2.840.10008.1.2", meta=False)
    assert legacy.read_bytes()[:2] == b"\x08\x00"  # no preamble, no DICM: a dataset from its first byte
    modern = write(tmp_path / "modern.dcm", pixels, "1.2.840.10008.1.2")
    img, meta = read_image(legacy)
    np.testing.assert_array_equal(img, read_image(modern)[0])
    assert meta["transfer_syntax"] == "Implicit VR Little Endian"
    img2, _, kind = read_image_bytes(legacy.read_bytes(), "upload")  # recognised by content, as the server does
    assert kind == "dicom"
    np.testing.assert_array_equal(img2, img)


def test_monochrome1_reads_as_the_exact_inverse(tmp_path):
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(read_image(tmp_path / "m1.dcm")[0], 1.0 - read_image(PYDICOM_FILES / "MR_small.dcm")[0])


def test_first_of_several_windows_is_used_and_named(tmp_path):
    pixels = radiograph12(64)
    path = write(tmp_path / "w.dcm", pixels, "1.2.840.10008.1.2.1", WindowCenter=[1024, 3000], WindowWidth=[512, 2000],
                 RescaleSlope=1, RescaleIntercept=0)
    img, meta = read_image(path)
    assert meta["window"] == "window centre 1024 width 512 (LINEAR, 1 of 2)"
    below, above = pixels <= 1024 - 0.5 - 511 / 2, pixels > 1024 - 0.5 + 511 / 2
    assert (img[below] == 0).all() and (img[above] == 1).all() and below.any() and above.any()


def test_voi_lut_sequence_is_applied_to_integer_values(tmp_path):
    from pydicom.dataset import Dataset

    pixels = radiograph12(64)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", (65535 - np.arange(4096) * 16).astype(np.uint16).tolist())  # LUT Data: inverting
    item.LUTExplanation = "inverted"
    path = write(tmp_path / "lut.dcm", pixels, "1.2.840.10008.1.2.1", VOILUTSequence=[item],
                 RescaleSlope=1.0, RescaleIntercept=0.0)
    with _no_warning():
        img, meta = read_image(path)
    np.testing.assert_allclose(img, (65535 - pixels.astype(np.float64) * 16) / 65535, atol=1e-6)
    assert meta["window"] == "VOI LUT 1 of 1 (inverted)"


def test_signed_pixels_and_rescale(tmp_path):
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")  # signed 16-bit CT with slope/intercept
    img, meta = read_image(PYDICOM_FILES / "CT_small.dcm")
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    order = np.argsort(hu.ravel())
    assert np.all(np.diff(img.ravel()[order]) >= -1e-7)  # monotone in the modality values
    assert meta["modality"] == "CT"


def test_palette_colour_is_converted_through_its_lut():
    img, meta = read_image(PYDICOM_FILES / "examples_palette.dcm")
    assert img.shape == (350, 800)
    assert meta["photometric"] == "PALETTE COLOR" and img.std() > 0.05


def test_multi_frame_uses_the_first_frame_and_says_so():
    img, meta = read_image(PYDICOM_FILES / "examples_ybr_color.dcm")
    assert img.shape == (240, 320) and meta["frames"] == 30


@pytest.mark.parametrize("text,years", [("045Y", 45.0), ("018M", 1.5), ("006W", 0.12), ("010D", 0.03), ("61", 61.0),
                                        ("", None), ("abc", None)])
def test_dicom_age_strings(text, years):
    got = parse_age(text)
    assert (np.isnan(got) if years is None else got == pytest.approx(years, abs=0.01))


def test_12bit_png_keeps_its_levels(tmp_path):
    from PIL import Image

    pixels = radiograph12(64)
    Image.fromarray(pixels).save(tmp_path / "no_sbit.png")  # 16-bit container, no declared depth
    img = read_image(tmp_path / "no_sbit.png")[0]
    assert len(np.unique(img)) == len(np.unique(pixels)) > 1000
    np.testing.assert_allclose(img, (pixels - pixels.min()) / (pixels.max() - pixels.min()), atol=1e-6)
    raw = (tmp_path / "no_sbit.png").read_bytes()
    sbit = _png_chunk(b"sBIT", bytes([12]))
    (tmp_path / "sbit.png").write_bytes(raw[:33] + sbit + raw[33:])  # after IHDR: 12 significant bits
    np.testing.assert_allclose(read_image(tmp_path / "sbit.png")[0], pixels / 4095, atol=1e-6)


def test_convert_and_predict_read_a_folder_mixing_encodings(encoded, trained_run, tmp_path):
    from pneumoscope.cli import main
    from pneumoscope.data import rle

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name, path in encoded.items():
        shutil.copy(path, mixed / f"{name}.dcm")
    write(mixed / "legacy.dcm", radiograph12(64), "1.2.840.10008.1.2", meta=False)
    for name in ("CT_small.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm", "examples_palette.dcm"):
        shutil.copy(PYDICOM_FILES / name, mixed / name)
    stems = sorted(p.stem for p in mixed.glob("*.dcm"))
    mask = np.zeros((256, 256), np.uint8)
    mask[20:60, 30:50] = 1
    rows = [f"{s},{rle.encode(mask) if s == 'jpeg_lossless_sv1' else '-1'}" for s in stems if s in encoded]
    (mixed / "train-rle.csv").write_text("ImageId,EncodedPixels\n" + "\n".join(rows) + "\n")
    assert main(["convert", "--dicom", str(mixed), "--out", str(tmp_path / "png")]) == 0
    assert main(["predict", "--run", str(trained_run), str(mixed), "--out", str(tmp_path / "p"), "--backend", "torch"]) == 0
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "png" / "train.csv")) == len(rows)
    assert len(pd.read_csv(tmp_path / "p" / "predictions.csv")) == len(stems)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


class _no_warning:
    """Fail when the reader lets a warning out (pydicom warns about a VOI LUT applied to floats)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.log = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not [w for w in self.log if "VOI LUT" in str(w.message)], [str(w.message) for w in self.log]
