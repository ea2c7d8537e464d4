"""File names and paths that tools mangle: any name the filesystem allows round-trips through
predictions.csv, the picture names, the resume bookkeeping and the submission; broken links are
reported; a failed first call leaves nothing; a full disk names the file and leaves no .tmp."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess

import numpy as np
import pytest

from pneumoscope.cli import main
from pneumoscope.data.rle import decode
from pneumoscope.files import ENCODING
from tests.helpers import one_error_line

NAMES = [  # each a real file name on Linux
    ("newline", "new\nline.png"),
    ("carriage return", "cr\rname.png"),
    ("tab", "tab\tname.png"),
    ("comma", "comma,name.png"),
    ("double quote", 'say "cheese".png'),
    ("bytes that are not UTF-8", os.fsdecode(b"latin1-\xe9t\xe9.png")),
    ("accents", "unicodé ü.png"),
    ("leading space and dash", " -dash.png"),
    ("only an extension", ".png"),
]


def _rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(*ENCODING), newline="")))


@pytest.mark.parametrize("name", [n for _, n in NAMES], ids=[i for i, _ in NAMES])
def test_any_file_name_round_trips(name, trained_run, tiny_synth, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sorted((tiny_synth / "png_images").glob("*_1_.png"))[0], src / name)
    out, sub = tmp_path / "out", tmp_path / "sub.csv"
    args = ["predict", "--run", str(trained_run), str(src), "--out", str(out), "--backend", "torch", "--submission", str(sub)]
    assert main(args) == 0
    assert main(args) == 0  # the rerun finds it done: nothing predicted or appended again
    said = capsys.readouterr().out
    assert "predicted 0 images (0.00 img/s), 1 already done" in said
    rows = _rows(out / "predictions.csv")
    assert [r["file"] for r in rows] == [str((src / name).resolve())]
    (mask_file,) = (out / "masks").iterdir()
    assert "\n" not in mask_file.name and "\r" not in mask_file.name
    mask = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(mask_file).convert("L")) > 0
    (entry,) = _rows(sub)
    assert entry["ImageId"] == os.path.splitext(name)[0] if name != ".png" else entry["ImageId"] == ".png"
    assert (decode(entry["EncodedPixels"], *mask.shape[::-1]) > 0).tolist() == mask.tolist()
    assert int(rows[0]["mask_area_px"]) == mask.sum()


def test_a_rerun_predicts_nothing_again_for_odd_names(trained_run, tiny_synth, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for _, name in NAMES:
        shutil.copy(sorted((tiny_synth / "png_images").glob("*.png"))[0], src / name)
    args = ["predict", "--run", str(trained_run), str(src), "--out", str(tmp_path / "out"), "--backend", "torch"]
    assert main(args) == 0
    assert main(args) == 0
    assert f"predicted 0 images (0.00 img/s), {len(NAMES)} already done" in capsys.readouterr().out
    assert len(_rows(tmp_path / "out" / "predictions.csv")) == len(NAMES)
    assert len(list((tmp_path / "out" / "masks").iterdir())) == len(NAMES)


def test_a_broken_symlink_is_reported_not_dropped(trained_run, tiny_synth, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sorted((tiny_synth / "png_images").glob("*.png"))[0], src / "a.png")
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    assert main(["predict", "--run", str(trained_run), str(src), "--out", str(out), "--backend", "torch"]) == 2
    assert "gone.png: a broken symbolic link" in one_error_line(capsys)
    assert not out.exists()  # a failed first call leaves no folder behind
    assert main(["predict", "--run", str(trained_run), str(src), "--out", str(out), "--backend", "torch", "--skip-bad"]) == 0
    (row,) = _rows(out / "skipped.csv")
    assert row["file"].endswith("gone.png") and "broken symbolic link" in row["reason"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 kB tmpfs (needs root, as in CI); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.decode().strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_names_the_file_and_leaves_no_tmp(trained_run, tiny_synth, tiny_disk, capsys):
    out = tiny_disk / "out"
    assert main(["predict", "--run", str(trained_run), str(tiny_synth / "png_images"), "--out", str(out), "--backend", "torch",
                 "--overlay-size", "1024"]) == 2
    line = one_error_line(capsys)
    assert f"pneumoscope: error: {out}/" in line and "No space left on device" in line
    assert not list(tiny_disk.rglob("*.tmp"))
