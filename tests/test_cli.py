"""The command line end to end, on synthetic phantoms and (when present) real samples."""

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscope.cli import build_parser, main
from tests.conftest import shared_path
from tests.helpers import FAST, one_error_line, write_dicom


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"synth", "convert", "train-seg", "evaluate-seg", "predict"} <= set(sub.choices)
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_synth_writes_layout_and_preview(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "4", "--size", "64", "--seed", "1", "--positive-rate", "0.5"]) == 0
    assert len(pd.read_csv(tmp_path / "train.csv")) == 4 and (tmp_path / "preview.png").is_file()
    assert "preview" in capsys.readouterr().out


def test_train_writes_the_run_folder(trained_run):
    for name in ("config.yaml", "split.csv", "history.csv", "best.safetensors", "last.pt", "metrics.json"):
        assert (trained_run / name).is_file(), name
    m = pd.read_json(trained_run / "metrics.json", typ="series")
    for key in ("loss", "iou", "iou_pos", "dice_kaggle", "dice_pos", "pixel_accuracy"):
        assert key in m


def test_evaluate_seg(trained_run, tiny_synth, capsys):
    assert main(["evaluate-seg", "--run", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test (6 images")
    assert main(["evaluate-seg", "--run", str(trained_run), "--data", str(tiny_synth), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "all (24 images, 12 positive)" in out
    assert "warning: 12 of these 24 images are images the run trained on: these numbers are no test" in out  # said, not silent


@pytest.mark.slow
def test_predict_png_and_dicom(trained_run, tiny_synth, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(sorted((tiny_synth / "png_images").glob("*.png"))[0], inputs / "a.png")
    write_dicom(inputs / "b.dcm", (np.random.default_rng(0).random((80, 100)) * 4000).astype(np.uint16))
    out = tmp_path / "out"
    assert main(["predict", "--run", str(trained_run), str(inputs), "--out", str(out)]) == 0
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == ["file", "width", "height", "mask_area_px", "max_prob"]
    assert len(table) == 2 and table.max_prob.between(0, 1).all()
    assert Image.open(out / "masks" / "b.png").mode == "1"  # 1-bit PNG, 0/255 read as grey
    mask = np.asarray(Image.open(out / "masks" / "b.png").convert("L"))
    assert mask.shape == (80, 100) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(cv2.imread(str(out / "masks" / "b.png"), cv2.IMREAD_GRAYSCALE), mask)
    assert (mask > 0).sum() == table.set_index(table.file.str[-5:]).loc["b.dcm", "mask_area_px"]
    assert (out / "overlays" / "a.jpg").is_file()


def test_corrupt_input_fails_with_one_line_or_is_skipped(trained_run, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(inputs / "good.png")
    (inputs / "bad.png").write_bytes(b"not a png at all")
    assert main(["predict", "--run", str(trained_run), str(inputs), "--out", str(tmp_path / "o")]) == 2
    assert "bad.png" in one_error_line(capsys)
    assert main(["predict", "--run", str(trained_run), str(inputs), "--out", str(tmp_path / "o"), "--skip-bad"]) == 0
    assert len(pd.read_csv(tmp_path / "o" / "predictions.csv")) == 1
    assert pd.read_csv(tmp_path / "o" / "skipped.csv").file.str.endswith("bad.png").all()


@pytest.mark.slow
def test_bad_mask_in_training_data(tiny_synth, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(tiny_synth, data)
    victim = sorted((data / "png_masks").glob("*.png"))[0]
    Image.fromarray(np.full((96, 96), 7, np.uint8)).save(victim)
    args = ["train-seg", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r"), *FAST,
            "--set", f"data.cache_dir={tmp_path / 'c'}", "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25"]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert f"png_masks/{victim.name}" in line and "not binary" in line
    assert main(args + ["--skip-bad"]) == 0
    skipped = pd.read_csv(tmp_path / "r" / "skipped.csv")
    assert len(skipped) == 1 and skipped.path.iloc[0].endswith(victim.name)


@pytest.mark.parametrize("args,needle", [
    (["train-seg", "--encoder", "resnet9000", "--out", "x"], "unknown encoder 'resnet9000'"),
    (["train-seg", "--data", "/nonexistent", "--out", "x"], "dataset folder not found"),
    (["evaluate-seg", "--run", "/nonexistent"], "not a run folder"),
    (["train-seg", "--out", "x", "--set", "train.bogus=1"], "unknown config key"),
])
def test_user_errors_are_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert needle in one_error_line(capsys)


def test_convert_siim_original(tmp_path):
    from pneumoscope.data import rle

    src = tmp_path / "siim"
    src.mkdir()
    m = np.zeros((40, 40), np.uint8)
    m[5:9, 20:30] = 1
    write_dicom(src / "u1.dcm", (np.arange(1600).reshape(40, 40) % 256).astype(np.uint8), photometric="MONOCHROME1")
    write_dicom(src / "u2.dcm", np.full((40, 40), 9, np.uint8))
    pd.DataFrame({"ImageId": ["u1", "u2"], " EncodedPixels": [" " + rle.encode(m), " -1"]}).to_csv(src / "train-rle.csv", index=False)
    out = tmp_path / "png"
    assert main(["convert", "--dicom", str(src), "--out", str(out)]) == 0
    table = pd.read_csv(out / "train.csv")
    assert table.has_pneumo.tolist() == [1, 0]
    mask = np.asarray(Image.open(out / "png_masks" / table.new_filename[0]))
    np.testing.assert_array_equal(mask > 0, m > 0)
    img = np.asarray(Image.open(out / "png_images" / table.new_filename[0]))
    assert img[0, 0] == 255 and img[0, 1] < 255  # MONOCHROME1: the lowest stored value is the brightest


@pytest.mark.slow
def test_real_siim_sample_train_and_predict(tmp_path):
    data = shared_path("siim-sample")
    run = tmp_path / "real"
    assert main(["train-seg", "--data", str(data), "--encoder", "resnet18", "--epochs", "1", "--out", str(run), *FAST,
                 "--set", f"data.cache_dir={tmp_path / 'c'}"]) == 0
    assert (run / "metrics.json").is_file()
    files = sorted((data / "png_images").glob("*.png"))[:2]
    assert main(["predict", "--run", str(run), *map(str, files), "--out", str(tmp_path / "p")]) == 0
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(table) == 2 and (table.width == 1024).all()


@pytest.mark.parametrize("command", ["synth", "convert", "train-seg", "evaluate-seg", "train-cls", "evaluate-cls", "run",
                                     "predict", "export", "serve", "listen", "upgrade-run"])
def test_every_command_explains_itself_and_its_defaults(command):
    """--help of each command: a description, help for every option that has a default, the default said."""
    import argparse

    from pneumoscope.cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert sub.description
    formatter = sub._get_formatter()
    for action in sub._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            said = formatter._get_help_string(action) % {"default": action.default}
            assert "default" in said, (command, action.option_strings, said)
