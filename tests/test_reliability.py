"""Bad inputs and faults, one row each: what a hostile or careless user does, what must come back
(exit code and the message fragment of one line), and what must be unchanged on disk afterwards."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscope.cli import main
from pneumoscope.data import rle
from pneumoscope.locks import LOCK
from tests.helpers import FAST, free_port, one_error_line, write_dicom

RUN_ARGS = ["--encoder", "resnet18", "--epochs", "1", *FAST, "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25"]


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A real PNG of the given size (all black), written without ever holding it in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row, parts = zlib.compressobj(9), b"\x00" * (width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(LOCK)}


@pytest.fixture
def ws(stage2_run, tiny_synth, tmp_path):
    """A workspace: a finished run with stage 2, post-processing rule and ONNX export (copied),
    the tiny dataset, a plain file, and a few inputs good and bad."""
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run)
    (run / "model.onnx").write_bytes(b"an export")
    (tmp_path / "afile").write_text("not a folder")
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(sorted((tiny_synth / "png_images").glob("*.png"))[0], good / "a.png")
    Image.fromarray(np.zeros((7, 1), np.uint8)).save(tmp_path / "tiny.png")
    siim = tmp_path / "siim"
    siim.mkdir()
    m = np.zeros((40, 40), np.uint8)
    m[5:9, 20:30] = 1
    write_dicom(siim / "u1.dcm", (np.arange(1600).reshape(40, 40) % 256).astype(np.uint8))
    write_dicom(siim / "u2.dcm", np.full((40, 40), 9, np.uint8))
    return {"run": run, "data": tiny_synth, "tmp": tmp_path, "file": tmp_path / "afile", "good": good, "siim": siim,
            "m": m}


def _rle_csv(ws, body: str, name: str = "train-rle.csv") -> Path:
    path = ws["siim"] / name
    path.write_text(body)
    return path


def _truncate_last(ws) -> None:
    last = ws["run"] / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])


def _all_bad_dicoms(ws) -> None:
    for f in ws["siim"].glob("*.dcm"):
        f.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 30)
    _rle_csv(ws, "ImageId,EncodedPixels\nu1,-1\nu2,-1\n")


def _big_png(ws) -> None:
    header_only_png(ws["tmp"] / "good" / "huge.png", 20000, 20000)


def _dicom_cut_short(ws) -> None:
    p = write_dicom(ws["tmp"] / "good" / "short.dcm", np.zeros((64, 64), np.uint16))
    data = p.read_bytes()
    p.write_bytes(data[:-3000])  # pixel data cut short


def _undecodable_dicom(ws) -> None:
    from tests.dicom_samples import PYDICOM_FILES

    shutil.copy(PYDICOM_FILES / "JPEG-lossy.dcm", ws["tmp"] / "good" / "broken_jpeg.dcm")


# id, setup, argv (with {placeholders}), exit code, message fragment, folder that must not change
CASES = [
    ("batch_size=0 on an existing run", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--set", "train.batch_size=0"], 2, "train.batch_size: 0 is not allowed", "run"),
    ("val_fraction=0 on an existing run", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--set", "data.val_fraction=0"], 2, "data.val_fraction: 0 is not allowed for training", "run"),
    ("epochs=0 on an existing run", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--set", "train.epochs=0"], 2, "train.epochs: 0 is not allowed", "run"),
    ("resume with another encoder", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--resume", "--encoder", "mobilenet_v2"], 2, "model.encoder=resnet18, not mobilenet_v2", "run"),
    ("resume from a truncated last.pt", _truncate_last, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--resume"], 2, "cut short or corrupt", "run"),
    ("size 0", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS, "--size", "0"], 2, "data.size: 0", "run"),
    ("size not a multiple of 32", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS, "--size", "100"],
     2, "multiple of 32", "run"),
    ("train-seg --out is a file", None, ["train-seg", "--data", "{data}", "--out", "{file}", *RUN_ARGS], 2, "is a file", None),
    ("train-seg --out not writable", None, ["train-seg", "--data", "{data}", "--out", "/sys/pneumoscope-run", *RUN_ARGS],
     2, "not writable", None),
    ("train-seg --out under a file", None, ["train-seg", "--data", "{data}", "--out", "{file}/run", *RUN_ARGS],
     2, "cannot be created", None),
    ("read-only cache folder", None, ["train-seg", "--data", "{data}", "--out", "{tmp}/new", *RUN_ARGS,
     "--set", "data.cache_dir=/sys/pneumoscope-cache"], 2, "cache folder /sys/pneumoscope-cache", None),
    ("synthetic default with a read-only cache", None, ["train-seg", "--out", "{tmp}/new", *RUN_ARGS,
     "--set", "data.cache_dir=/sys/pneumoscope-cache"], 2, "cannot write the synthetic phantoms", None),
    ("unknown layout", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS, "--set", "data.layout=dicomdir"],
     2, "unknown layout 'dicomdir'", "run"),
    ("cuda without a GPU", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS, "--device", "cuda"],
     2, "no CUDA GPU", "run"),
    ("evaluate-seg on other data keeps the run's metrics", None, ["evaluate-seg", "--run", "{run}", "--data", "{data}",
     "--split", "all"], 0, None, "run-metrics"),
    ("evaluate-seg of a folder that is no run", None, ["evaluate-seg", "--run", "{tmp}"], 2, "not a run folder", None),
    ("train-cls of a folder that is no run", None, ["train-cls", "--run", "{file}"], 2, "is a file, not a run folder", None),
    ("empty EncodedPixels cell", lambda ws: _rle_csv(ws, "ImageId, EncodedPixels\nu1,\nu2,-1\n"),
     ["convert", "--dicom", "{siim}", "--out", "{tmp}/png"], 2, "u1: empty EncodedPixels cell", None),
    ("headerless Kaggle RLE sample is accepted", lambda ws: _rle_csv(ws, f"u1,{rle.encode(ws['m'])}\nu2,-1\n"),
     ["convert", "--dicom", "{siim}", "--out", "{tmp}/png"], 0, None, None),
    ("convert --skip-bad where every item fails", _all_bad_dicoms, ["convert", "--dicom", "{siim}", "--out", "{tmp}/png",
     "--skip-bad"], 2, "no image could be converted; all 2 skipped", None),
    ("convert --out is a file", lambda ws: _rle_csv(ws, "ImageId,EncodedPixels\nu1,-1\n"),
     ["convert", "--dicom", "{siim}", "--out", "{file}"], 2, "is a file", None),
    ("predict a 20000x20000 PNG", _big_png, ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p"], 2,
     "more than the limit of 179 megapixels", "run"),
    ("predict a 1x7 image", None, ["predict", "--run", "{run}", "{tmp}/tiny.png", "--out", "{tmp}/p"], 2,
     "too small for a radiograph", "run"),
    ("predict a DICOM cut short", _dicom_cut_short, ["predict", "--run", "{run}", "{good}",
     "--out", "{tmp}/p", "--backend", "torch"], 2, "short.dcm: not a readable DICOM image", "run"),
    ("predict a DICOM no decoder can read (pydicom's multi-line error)", _undecodable_dicom, ["predict", "--run", "{run}",
     "{good}", "--out", "{tmp}/p", "--backend", "torch"], 2, "Unable to decode as exceptions were raised by all", "run"),
    ("predict --batch-size 0", None, ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--batch-size", "0"], 2,
     "--batch-size 0: must be at least 1", "run"),
    ("predict --batch-size -3", None, ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--batch-size", "-3"], 2,
     "--batch-size -3: must be at least 1", "run"),
    ("predict --out is a file", None, ["predict", "--run", "{run}", "{good}", "--out", "{file}"], 2, "is a file", "run"),
    ("predict a missing input", None, ["predict", "--run", "{run}", "{tmp}/nothing.png", "--out", "{tmp}/p"], 2,
     "no such file or folder", "run"),
    ("predict with a run that is no run", None, ["predict", "--run", "{tmp}/good", "{good}", "--out", "{tmp}/p"], 2,
     "not a run folder", None),
    ("export --out is a folder", None, ["export", "--run", "{run}", "--out", "{tmp}"], 2, "is a folder", "run"),
    ("serve --keep-uploads not writable", None, ["serve", "--run", "{run}", "--keep-uploads", "/sys/pneumoscope-uploads"],
     2, "--keep-uploads /sys/pneumoscope-uploads: not writable", "run"),
    ("bad config file", lambda ws: (ws["tmp"] / "bad.yaml").write_text("train: [unclosed"),
     ["train-seg", "--config", "{tmp}/bad.yaml", "--out", "{run}"], 2, "invalid YAML", "run"),
    ("config file that is a list", lambda ws: (ws["tmp"] / "list.yaml").write_text("- data\n- train\n"),
     ["train-seg", "--config", "{tmp}/list.yaml", "--out", "{run}"], 2, "a config file is a mapping of sections", "run"),
    ("serve --port out of range", None, ["serve", "--run", "{run}", "--port", "99999"], 2,
     "--port 99999: must be 0-65535", "run"),
    ("serve --port negative", None, ["serve", "--run", "{run}", "--port", "-1"], 2, "--port -1: must be 0-65535", "run"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, ws, capsys):
    _, setup, argv, code, needle, keep = case
    if setup is not None:
        setup(ws)
    guarded = ws["run"] if keep in ("run", "run-metrics") else None
    before = snapshot(guarded) if guarded else None
    args = [a.format(**{k: v for k, v in ws.items() if isinstance(v, Path)}) for a in argv]
    assert main(args) == code
    if code == 2:
        assert needle in one_error_line(capsys)
    if keep == "run":
        assert snapshot(guarded) == before
    if keep == "run-metrics":  # other data: the run's own test metrics stay; the new ones are beside them
        after = snapshot(guarded)
        assert after["metrics.json"] == before["metrics.json"]
        assert "wrote" in capsys.readouterr().out and any(k.startswith("metrics-") for k in set(after) - set(before))


def test_serve_on_a_port_in_use_is_one_line(ws, capsys):
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        assert main(["serve", "--run", str(ws["run"]), "--port", str(port), "--backend", "torch"]) == 2
    line = one_error_line(capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "serving" not in capsys.readouterr().out


def test_retraining_replaces_the_folder_only_when_its_first_epoch_is_saved(ws):
    run = ws["run"]
    old = snapshot(run)
    assert main(["train-seg", "--data", str(ws["data"]), "--out", str(run), *RUN_ARGS, "--set", "train.lr=1e-4"]) == 0
    new = snapshot(run)
    for name in ("best.safetensors", "config.yaml", "last.pt", "history.csv", "metrics.json", "postprocess.json"):
        assert new[name] != old[name], name
    assert "model.onnx" not in new and not any(k.startswith("stage2/") for k in new)  # derived from the old weights
    assert pd.read_csv(run / "history.csv").shape[0] == 1
