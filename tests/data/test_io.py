import numpy as np
import pytest
from PIL import Image

from pneumoscope.data.io import is_dicom, list_images, read_image, read_mask
from pneumoscope.errors import PneumoscopeError
from tests.conftest import shared_path
from tests.helpers import write_dicom


def _ramp(h=8, w=8, top=255, dtype=np.uint8):
    return (np.arange(h * w).reshape(h, w) * top / (h * w - 1)).astype(dtype)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_png_modes_become_one_channel(tmp_path, mode):
    grey = _ramp()
    if mode == "L":
        im = Image.fromarray(grey)
    elif mode == "RGB":
        im = Image.fromarray(np.stack([grey] * 3, -1))
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    else:
        im = Image.fromarray(grey.astype(np.uint16) * 257)
    im.save(tmp_path / "x.png")
    img, meta = read_image(tmp_path / "x.png")
    assert img.shape == (8, 8) and img.dtype == np.float32 and meta == {}
    np.testing.assert_allclose(img, grey / 255.0, atol=1 / 255)


def test_jpeg(tmp_path):
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tmp_path / "x.jpg")
    img, _ = read_image(tmp_path / "x.jpg")
    assert abs(float(img.mean()) - 128 / 255) < 0.01


def test_corrupt_png_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(PneumoscopeError, match="broken.png"):
        read_image(bad)


def test_dicom_monochrome2_16bit_and_metadata(tmp_path):
    px = _ramp(top=4095, dtype=np.uint16)
    path = write_dicom(tmp_path / "a.dcm", px, sex="F", age="061Y", view="AP", patient_id="42")
    img, meta = read_image(path)
    np.testing.assert_allclose(img, px / 4095.0, atol=1e-6)
    assert {k: meta[k] for k in ("patient_id", "sex", "age", "view")} == {"patient_id": "42", "sex": "F", "age": 61.0, "view": "AP"}
    assert meta["modality"] == "CR" and meta["photometric"] == "MONOCHROME2" and meta["frames"] == 1
    assert meta["transfer_syntax"] == "Explicit VR Little Endian" and meta["window"].startswith("none")


def test_dicom_monochrome1_is_inverted(tmp_path):
    px = _ramp(top=1000, dtype=np.uint16)
    img1, _ = read_image(write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1"))
    img2, _ = read_image(write_dicom(tmp_path / "m2.dcm", px))
    np.testing.assert_allclose(img1, 1.0 - img2, atol=1e-6)


def test_dicom_rescale_and_window(tmp_path):
    px = _ramp(top=1000, dtype=np.uint16)
    # slope 2, intercept -1000: values -1000..1000; window centre 0 width 200 clips outside +-100
    img, _ = read_image(write_dicom(tmp_path / "w.dcm", px, slope=2.0, intercept=-1000.0, window=(0.0, 200.0)))
    hu = px.astype(np.float64) * 2 - 1000
    assert (img[hu < -100] == 0).all() and (img[hu > 100] == 1).all()
    inside = (hu > -90) & (hu < 90)
    assert inside.any() and np.all(np.diff(img[inside]) >= 0)


def test_dicom_found_without_suffix(tmp_path):
    path = write_dicom(tmp_path / "noext", _ramp())
    assert is_dicom(path)
    assert read_image(path)[0].shape == (8, 8)


def test_corrupt_dicom(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 20)
    with pytest.raises(PneumoscopeError, match="bad.dcm"):
        read_image(bad)


def test_mask_checks(tmp_path):
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(tmp_path / "ok.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "ok.png"), [[0, 1], [1, 0]])
    Image.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(PneumoscopeError, match="not binary"):
        read_mask(tmp_path / "grey.png")
    with pytest.raises(PneumoscopeError, match="differs from image size"):
        read_mask(tmp_path / "ok.png", expected_shape=(4, 4))


def test_real_rgba_nih_images_load_as_greyscale():
    root = shared_path("nih-sample", "images")
    modes = {}
    for f in sorted(root.glob("*.png")):
        with Image.open(f) as im:
            modes.setdefault(im.mode, f)
    assert "RGBA" in modes
    img, _ = read_image(modes["RGBA"])
    assert img.ndim == 2 and 0.05 < img.mean() < 0.95


def test_list_images_expands_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.dcm", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.png", "b.dcm"]
    with pytest.raises(PneumoscopeError):
        list_images([tmp_path / "missing"])
