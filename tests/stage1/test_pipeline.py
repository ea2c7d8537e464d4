"""Training and evaluation as programs (stage1/pipeline.py): what evaluate-seg reports."""

from __future__ import annotations

import shutil

import pytest

from pneumoscope.data.synth import generate
from pneumoscope.stage1.pipeline import evaluate_seg

KEYS = ("iou", "iou_pos", "dice_kaggle", "dice_pos", "pixel_accuracy")


def _real(folder, n: int):
    """``n`` real SIIM-ACR images with their masks (Kaggle layout), or phantoms without the samples."""
    import pandas as pd

    from tests.conftest import SHARED

    src = SHARED / "siim-sample"
    if not src.is_dir():
        generate(folder, n=n, size=96, seed=11, positive_rate=1.0)
        return folder
    table = pd.read_csv(src / "train.csv").head(n)
    for sub in ("png_images", "png_masks"):
        (folder / sub).mkdir(parents=True)
        for name in table.new_filename:
            shutil.copy(src / sub / name, folder / sub / name)
    table.to_csv(folder / "train.csv", index=False)
    return folder


@pytest.mark.parametrize("n", [1, 6])
def test_every_interval_holds_its_own_estimate(trained_run, tmp_path, n):
    """On one real radiograph, ``iou 0.0718 [0.0719, 0.0719]`` once: the estimate came from float32
    probabilities, the bootstrap from the float16 ones kept for it. Both now rest on the same per-image numbers, on any n; with one
    patient the interval is the estimate."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    m = evaluate_seg(str(run), str(_real(tmp_path / "data", n)), "all")
    assert m["n_images"] == n
    for k in KEYS:
        lo, hi = m["ci95"][k]
        if n == 1:
            assert lo == hi == pytest.approx(m[k], abs=1e-12), k
        else:
            assert lo - 1e-12 <= m[k] <= hi + 1e-12, (k, m[k], lo, hi)
