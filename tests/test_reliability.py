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


def _json_edit(rel: str, change) -> callable:
    """A setup that loads a JSON file of the run, lets ``change`` edit the mapping, and writes it back."""
    import json

    def setup(ws) -> None:
        path = ws["run"] / rel
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return setup


def _set(rel: str, key: str, value) -> callable:
    return _json_edit(rel, lambda d: d.__setitem__(key, value))


def _calibration(value) -> callable:
    return _json_edit("stage2/classifier.json", lambda d: d["members"][0].__setitem__("calibration", value))


def _write(rel: str, data: bytes) -> callable:
    return lambda ws: (ws["run"] / rel).write_bytes(data)


def _other_weights_id(rel: str) -> callable:
    return _set(rel, "weights_id", "0" * 32)


def _edit_header_weights_id(ws) -> None:
    """One character of the weights id in the safetensors header changed (a valid id of other weights)."""
    path = ws["run"] / "best.safetensors"
    data = bytearray(path.read_bytes())
    at = data.index(b'"weights_id":"') + len(b'"weights_id":"')
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    path.write_bytes(bytes(data))


def _deflate_bomb(ws, rows: int = 64, cols: int = 64, pixel_bytes: int = 256 << 20) -> Path:
    """A deflated DICOM whose header says rows x cols but whose pixel data inflates to ``pixel_bytes`` (256 KB on disk)."""
    from tests.dicom_samples import deflate_bomb

    return deflate_bomb(ws["tmp"] / "good" / "bomb.dcm", rows, cols, pixel_bytes)


def _j2k_bigger_than_its_header(ws) -> None:
    """A JPEG 2000 DICOM whose header says 64x64 while its codestream holds 6000x6000 pixels."""
    from tests.dicom_samples import write

    imagecodecs = pytest.importorskip("imagecodecs")
    stream = imagecodecs.jpeg2k_encode(np.zeros((6000, 6000), np.uint16), level=0)
    write(ws["tmp"] / "good" / "j2k.dcm", np.zeros((64, 64), np.uint16), "1.2.840.10008.1.2.4.90", frame=stream)


def _export_then(damage) -> callable:
    """Export the run to ONNX (as predict would), then damage what was written."""
    def setup(ws) -> None:
        (ws["run"] / "model.onnx").unlink(missing_ok=True)
        assert main(["export", "--run", str(ws["run"])]) == 0
        damage(ws["run"])
    return setup


def _forget_hash_and_garble(run: Path) -> None:
    import json

    report = json.loads((run / "export.json").read_text())
    report.pop("sha256")
    (run / "export.json").write_text(json.dumps(report))
    (run / "model.onnx").write_bytes(b"not a protobuf at all")


def _empty_pixel_data(ws) -> None:
    p = write_dicom(ws["tmp"] / "good" / "empty.dcm", np.zeros((64, 64), np.uint8))
    from pydicom import dcmread

    ds = dcmread(p)
    ds.PixelData = b""
    ds.save_as(p)


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
    # -- run-folder files checked on load (issue 16): the file and the field, one line, nothing used ----------------
    *[(f"damaged run file: {name}", setup, ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "torch"],
       2, needle, "run") for name, setup, needle in [
        ("stage-2 threshold -5", _set("stage2/stage2.json", "threshold", -5), "stage2.json: field 'threshold' is -5, outside [0, 1]"),
        ("stage-2 threshold NaN", _set("stage2/stage2.json", "threshold", float("nan")), "field 'threshold' is nan, not a finite number"),
        ("stage-2 threshold as text", _set("stage2/stage2.json", "threshold", "0.5"), "field 'threshold' is '0.5', not a number"),
        ("stage-2 threshold missing", _json_edit("stage2/stage2.json", lambda d: d.pop("threshold")), "field 'threshold' is missing"),
        ("unknown feature extractor", _set("stage2/stage2.json", "feature_extractor", "resnet50"),
         "field 'feature_extractor' is 'resnet50', not one of densenet121, seg-encoder"),
        ("weights id that is no id", _set("stage2/stage2.json", "weights_id", "xyz"), "stage2.json: field 'weights_id' is 'xyz'"),
        ("stage-2 summary not JSON", _write("stage2/stage2.json", b'{"threshold": 0.'), "stage2.json: is not valid JSON"),
        ("calibration of the wrong shape", _calibration([1, 2]), "field 'members[0].calibration' is [1, 2], not a mapping or null"),
        ("calibration method unknown", _calibration({"method": "platt", "a": 1}), "members[0].calibration.method' is 'platt'"),
        ("isotonic breakpoints of unequal length", _calibration({"method": "isotonic", "x": [0, 1], "y": [0]}),
         "has 2 x and 1 y breakpoints"),
        ("isotonic x not ascending", _calibration({"method": "isotonic", "x": [1, 0], "y": [0, 1]}), "calibration.x' is not in ascending"),
        ("isotonic y outside [0, 1]", _calibration({"method": "isotonic", "x": [0, 1], "y": [0, 7]}), "calibration.y[1]' is 7"),
        ("sigmoid a infinite", _calibration({"method": "sigmoid", "a": float("inf"), "b": 0}), "calibration.a' is inf"),
        ("more members than boosters", _json_edit("stage2/classifier.json", lambda d: d["members"].append({"calibration": None})),
         "lists 2 members for 1 boosters"),
        ("classifier of another format", _set("stage2/classifier.json", "format", "sklearn-pickle"), "field 'format' is 'sklearn-pickle'"),
        ("booster of random bytes", _write("stage2/booster-0.ubj", bytes(range(256)) * 8), "booster-0.ubj: not an XGBoost model that loads"),
        *[(f"booster of 5,000 random bytes (seed {seed})", _write("stage2/booster-0.ubj", __import__("random").Random(seed).randbytes(5000)),
           "booster-0.ubj: not an XGBoost model that loads") for seed in (6,)],  # XGBoost quotes these bytes: UnicodeDecodeError
        ("booster missing", lambda ws: (ws["run"] / "stage2" / "booster-0.ubj").unlink(), "booster-0.ubj: is missing"),
        ("feature names of another length", _write("stage2/feature_names.json", b'["a", "b"]'), "feature_names.json: is not a list of"),
        ("post-processing top = 7", _set("postprocess.json", "top", 7), "postprocess.json: field 'top' is 7, outside [0, 1]"),
        ("post-processing min_area = -1", _set("postprocess.json", "min_area", -1), "field 'min_area' is -1, outside [0, 1]"),
        ("post-processing bottom above top", _json_edit("postprocess.json", lambda d: d.update(top=0.3, bottom=0.6)),
         "field 'bottom' is 0.6, above top 0.3"),
        ("split with an unknown part", lambda ws: (ws["run"] / "split.csv").write_text("id,patient_id,label,split\na,a,1,holdout\n"),
         "split.csv: field 'split' holds 'holdout'"),
        ("one character of the weights id in the header edited", _edit_header_weights_id, None),
    ] if needle is not None],
    ("the exported model.onnx replaced after its parity check", _export_then(lambda run: open(run / "model.onnx", "ab").write(b"x")),
     ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "onnx"], 2,
     "model.onnx: does not match the sha256 its export.json records (damaged or replaced)", "run"),
    ("an exported model.onnx ONNX Runtime cannot load", _export_then(_forget_hash_and_garble),
     ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "onnx"], 2,
     "model.onnx: not an ONNX model that ONNX Runtime loads", "run"),
    ("--init-from a run with other decoder widths", None, ["train-seg", "--config", "demo", "--data", "{data}", "--out", "{tmp}/new",
     "--init-from", "{run}", *RUN_ARGS], 2, "trained with model.decoder_channels=[256, 128, 64, 32, 16], not (128, 64, 32, 16, 16)",
     "run"),
    # -- every decoder bounded before it decodes ---------------------------------------------------------------------
    ("predict a deflated DICOM bomb (64x64 declared, 256 MB inflated)", _deflate_bomb,
     ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "torch"], 2,
     "bomb.dcm: its deflated data inflates beyond the size its header declares (64x64 pixels, 1 frame(s))", "run"),
    ("predict a deflated DICOM declaring 20000x20000", lambda ws: _deflate_bomb(ws, 20000, 20000, 4096),
     ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "torch"], 2,
     "its header declares 1 frame(s) of 20000x20000 pixels x 1 sample(s): 400 megapixels, more than the limit of 179", "run"),
    ("predict a JPEG 2000 DICOM whose codestream is larger than its header", _j2k_bigger_than_its_header,
     ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "torch"], 2,
     "its compressed data is 6000x6000 pixels but its header says 64x64", "run"),
    ("predict a DICOM with an empty PixelData element", _empty_pixel_data,
     ["predict", "--run", "{run}", "{good}", "--out", "{tmp}/p", "--backend", "torch"], 2, "no pixel data", "run"),
    ("config with a duplicate section", lambda ws: (ws["tmp"] / "dup.yaml").write_text("train:\n  epochs: 2\ntrain:\n  epochs: 25\n"),
     ["train-seg", "--config", "{tmp}/dup.yaml", "--out", "{run}"], 2, "key 'train' appears twice (lines 1 and 3)", "run"),
    ("config with a duplicate key", lambda ws: (ws["tmp"] / "dup2.yaml").write_text("train:\n  lr: 1\n  lr: 2\n"),
     ["train-seg", "--config", "{tmp}/dup2.yaml", "--out", "{run}"], 2, "key 'lr' appears twice", "run"),
    ("config with an alias bomb", lambda ws: (ws["tmp"] / "bomb.yaml").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, "
                                                         f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))),
     ["train-seg", "--config", "{tmp}/bomb.yaml", "--out", "{run}"], 2, "aliases are not allowed in config files", "run"),
    ("--set with an alias", None, ["train-seg", "--out", "{run}", "--set", "train.lr=*x"], 2, "--set train.lr: invalid YAML", "run"),
    ("upgrade-run of a folder with nothing pickled", None, ["upgrade-run", "--run", "{run}"], 2, "nothing to upgrade", "run"),
    # -- minor cases of issue 24 -------------------------------------------------------------------------------------
    ("predict --out a run folder", None, ["predict", "--run", "{run}", "{good}", "--out", "{run}"], 2,
     "is a run or study folder; predictions go into a folder of their own", "run"),
    ("predict --submission under a file (said before predicting)", None, ["predict", "--run", "{run}", "{good}", "--out",
     "{tmp}/p", "--submission", "{file}/sub.csv"], 2, "--submission: the folder of", "run"),
    ("train-seg --resume with --init-from", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS, "--resume",
     "--init-from", "{run}"], 2, "--resume continues this run from its own resume checkpoint; --init-from starts a new run", "run"),
    # -- non-finite numbers are refused before anything is touched (issue 24) -----------------------------------------
    ("train-seg --set train.lr=inf into a finished run", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--set", "train.lr=inf"], 2, "config key train.lr: inf is not allowed; it must be a finite number", "run"),
    ("train-seg --set loss.focal_alpha=-.inf", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--set", "loss.focal_alpha=-.inf"], 2, "config key loss.focal_alpha: -inf is not allowed", "run"),
    ("train-seg --set train.weight_decay=.nan", None, ["train-seg", "--data", "{data}", "--out", "{run}", *RUN_ARGS,
     "--set", "train.weight_decay=.nan"], 2, "config key train.weight_decay: nan is not allowed", "run"),
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


@pytest.mark.parametrize("argv, needle", [
    (["listen", "--run", "{run}", "--spool", "{tmp}/spool", "--send-to", "X@127.0.0.1:1", "--quiet-seconds", "nan"],
     "argument --quiet-seconds: nan is not a finite number"),
    (["listen", "--run", "{run}", "--spool", "{tmp}/spool", "--send-to", "X@127.0.0.1:1", "--retry-seconds", "inf"],
     "argument --retry-seconds: inf is not a finite number"),
    (["serve", "--run", "{run}", "--max-upload-mb", "nan"], "argument --max-upload-mb: nan is not a finite number"),
    (["serve", "--run", "{run}", "--max-megapixels", "inf"], "argument --max-megapixels: inf is not a finite number"),
    (["synth", "--out", "{tmp}/ph", "--seed", "1", "--positive-rate=-inf"], "argument --positive-rate: -inf is not a finite number"),
    (["serve", "--run", "{run}", "--max-upload-mb", "lots"], "argument --max-upload-mb: 'lots' is not a number"),
], ids=lambda v: " ".join(v[:1] + v[-2:]) if isinstance(v, list) else None)
def test_a_non_finite_option_is_one_line_before_anything_loads(ws, capsys, argv, needle):
    before = snapshot(ws["run"])
    with pytest.raises(SystemExit) as exc:
        main([a.format(**{k: v for k, v in ws.items() if isinstance(v, Path)}) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and needle in err[0], err
    assert snapshot(ws["run"]) == before and not (ws["tmp"] / "spool").exists()


def test_no_option_of_any_command_takes_a_plain_float():
    """The class, not the examples: every number option goes through the finite check."""
    import argparse

    from pneumoscope.cli.parser import build_parser, finite

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    floats = [f"{name} {opt.option_strings}" for name, parser in sub.choices.items() for opt in parser._actions
              if opt.type is float]
    assert floats == [] and any(opt.type is finite for p in sub.choices.values() for opt in p._actions)


def test_library_options_refuse_non_finite_numbers():
    from pneumoscope.errors import PneumoscopeError
    from pneumoscope.inference.options import PredictOptions
    from pneumoscope.node.destinations import Destination
    from pneumoscope.node.service import NodeOptions

    with pytest.raises(PneumoscopeError, match="finite"):
        PredictOptions(max_megapixels=float("inf")).check()
    for bad in ({"quiet": float("nan")}, {"retry": float("inf")}):
        with pytest.raises(PneumoscopeError, match="finite"):
            NodeOptions(destinations=(Destination.parse("X@127.0.0.1:1"),), **bad).check()


def test_a_submission_into_a_missing_folder_is_written(ws, capsys):
    sub = ws["tmp"] / "new" / "deeper" / "sub.csv"
    assert main(["predict", "--run", str(ws["run"]), str(ws["good"]), "--out", str(ws["tmp"] / "p"), "--submission", str(sub),
                 "--backend", "torch"]) == 0
    assert pd.read_csv(sub).columns.tolist() == ["ImageId", "EncodedPixels"]


def test_a_token_file_others_can_read_is_said(tmp_path):
    import os

    from pneumoscope.serve.auth import token_file_warning

    f = tmp_path / "token"
    f.write_text("x" * 40)
    os.chmod(f, 0o644)
    assert "can be read by other users (mode 0644)" in token_file_warning(str(f))
    os.chmod(f, 0o600)
    assert token_file_warning(str(f)) is None


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


@pytest.mark.parametrize("setup, said", [
    (_edit_header_weights_id, ["stage 2 was fitted on other weights", "post-processing rule was searched for other weights"]),
    (_other_weights_id("stage2/stage2.json"), ["stage 2 was fitted on other weights: no P(pneumothorax) (rerun train-cls)"]),
    (_other_weights_id("postprocess.json"), ["post-processing rule was searched for other weights: the plain threshold is used"]),
], ids=["weights id in the header edited", "stage 2 of other weights", "rule of other weights"])
def test_derived_files_of_other_weights_are_said_once_never_silently(ws, capsys, setup, said):
    setup(ws)
    assert main(["predict", "--run", str(ws["run"]), str(ws["good"]), "--out", str(ws["tmp"] / "p"), "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    for line in said:
        assert out.count(line) == 1, out
    rows = pd.read_csv(ws["tmp"] / "p" / "predictions.csv")
    assert ("p_pneumothorax" in rows.columns) == (not any("stage 2" in line for line in said))


def test_a_malicious_resume_checkpoint_is_named_as_such(ws, capsys):
    import os

    import torch

    torch.save({"model": {}, "state": {}, "hook": os.system}, ws["run"] / "last.pt")  # pickles a reference to os.system
    before = snapshot(ws["run"])
    assert main(["train-seg", "--data", str(ws["data"]), "--out", str(ws["run"]), *RUN_ARGS, "--resume"]) == 2
    assert "not a pneumoscope checkpoint (unsafe pickle refused" in one_error_line(capsys)
    assert snapshot(ws["run"]) == before


def test_evaluate_seg_on_other_data_evaluates_exactly_that_data(ws, tiny_synth, tmp_path, capsys):
    import json

    import yaml

    from pneumoscope.data.synth import generate

    generate(tmp_path / "other", n=6, size=96, seed=9, positive_rate=0.5)
    cfg = yaml.safe_load((ws["run"] / "config.yaml").read_text())
    cfg["data"]["extra_paths"] = [str(tiny_synth)]  # the run trained on a second source (24 more images)
    (ws["run"] / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate-seg", "--run", str(ws["run"]), "--data", str(tmp_path / "other")]) == 0
    assert "all (6 images," in capsys.readouterr().out
    assert json.loads(next(ws["run"].glob("metrics-other-*.json")).read_text())["n_images"] == 6
