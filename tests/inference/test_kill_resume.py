"""predict killed at random moments, then run again: every image exactly once, no corrupt row, and a
submission that decodes back to the written masks."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscope.data.rle import decode

pytestmark = pytest.mark.slow


def test_random_kills_then_a_rerun_leave_a_consistent_folder(trained_run, tiny_synth, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "other").mkdir(parents=True)
    pngs = sorted((tiny_synth / "png_images").glob("*.png"))
    for k in range(8):
        for f in pngs:
            shutil.copy(f, inputs / f"{k}_{f.name}")
    shutil.copy(pngs[0], inputs / "other" / f"0_{pngs[0].name}")  # same stem as another file: its own mask name
    files = sorted(p.resolve() for p in inputs.rglob("*.png"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pneumoscope", "predict", "--run", str(trained_run), str(inputs), "--out", str(out),
           "--submission", str(out / "submission.csv"), "--backend", "torch", "--batch-size", "1", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(2024)
    partial = []
    csv = out / "predictions.csv"

    def rows() -> int:
        return max(0, sum(1 for _ in open(csv)) - 1) if csv.is_file() else 0

    for _ in range(5):
        # SIGKILL at a random point of the work: once a random number of rows is written (a wall-clock
        # delay was flaky: on a fast machine a whole run could finish before it), plus a random moment
        target, deadline = rows() + rng.randint(1, 40), time.monotonic() + 120
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and rows() < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        partial.append(rows())
    assert any(0 < n < len(files) for n in partial), partial  # some kill landed in the middle of the work
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == len(files) and table.file.is_unique and set(table.file) == {str(f) for f in files}
    assert table.notna().all().all() and (table.width == 96).all()
    sub = pd.read_csv(out / "submission.csv", dtype=str)
    assert len(sub) == len(files)
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == len(files)
    by_stem = {}
    for m in masks:
        by_stem.setdefault(m.stem, np.asarray(Image.open(m)) > 0)
    for rec in sub.itertuples():
        np.testing.assert_array_equal(decode(rec.EncodedPixels, 96, 96).astype(bool), by_stem[rec.ImageId])
