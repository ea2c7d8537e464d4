import cv2
import numpy as np

from pneumoscope.data.synth import generate, render


def test_deterministic_by_seed(tmp_path):
    a = generate(tmp_path / "a", n=6, size=64, seed=5, positive_rate=0.5)
    b = generate(tmp_path / "b", n=6, size=64, seed=5, positive_rate=0.5)
    assert a.equals(b)
    for name in a.new_filename:
        assert (tmp_path / "a" / "png_images" / name).read_bytes() == (tmp_path / "b" / "png_images" / name).read_bytes()
    c = generate(tmp_path / "c", n=6, size=64, seed=6, positive_rate=0.5)
    assert any((tmp_path / "a" / "png_images" / x).read_bytes() != (tmp_path / "c" / "png_images" / y).read_bytes()
               for x, y in zip(a.new_filename, c.new_filename))


def test_positive_rate_layout_and_preview(tmp_path):
    t = generate(tmp_path, n=10, size=64, seed=0, positive_rate=0.3)
    assert int(t.has_pneumo.sum()) == 3
    assert (tmp_path / "preview.png").is_file()
    for rec in t.itertuples():
        mask = cv2.imread(str(tmp_path / "png_masks" / rec.new_filename), cv2.IMREAD_GRAYSCALE)
        assert set(np.unique(mask)) <= {0, 255}
        assert bool(mask.any()) == bool(rec.has_pneumo)


def test_pneumothorax_is_texture_not_brightness():
    """Inside the pneumothorax the mean intensity matches the adjacent aerated lung, while
    fine texture (median band-pass magnitude) is clearly lower: the markings are absent."""
    ratios, diffs = [], []
    for i in range(16):
        ph = render(256, True, np.random.default_rng([11, i]))
        img = ph.image.astype(np.float32)
        inside = cv2.erode(ph.mask, np.ones((5, 5), np.uint8)).astype(bool)
        if inside.sum() < 300:
            continue
        near = cv2.dilate(ph.mask, np.ones((15, 15), np.uint8)) & (1 - cv2.dilate(ph.mask, np.ones((5, 5), np.uint8)))
        ring = (near & ph.lungs).astype(bool)
        band = np.abs(cv2.GaussianBlur(img, (0, 0), 0.7) - cv2.GaussianBlur(img, (0, 0), 2))
        ratios.append(np.median(band[inside]) / np.median(band[ring]))
        diffs.append(abs(img[inside].mean() - img[ring].mean()))
    assert len(ratios) >= 10
    assert np.median(ratios) < 0.9
    assert np.median(diffs) < 5  # of 255: no constant offset gives it away


def test_negative_has_empty_mask_and_positive_is_peripheral():
    neg = render(128, False, np.random.default_rng(1))
    assert neg.mask.sum() == 0 and neg.side == ""
    pos = render(128, True, np.random.default_rng(2))
    ys, xs = np.nonzero(pos.mask)
    assert pos.side in ("left", "right") and len(xs) > 20
    # patient right is image left: the mask lies on the matching half
    assert (xs.mean() < 64) == (pos.side == "right")
