"""``predict`` over files and folders, the entry point: lists the inputs (each file once, never the
output folder's own pictures), checks what the options need, then predicts in this process
(:func:`.batch.predict_into`) or, launched by ``torchrun``, this process's share (:mod:`.torchrun`)."""

from __future__ import annotations

import os
from pathlib import Path

from .. import locks
from ..data.io import list_images
from ..errors import PneumoscopeError
from ..files import check_writable_folder
from ..folders import holds_a_model
from .batch import predict_into
from .options import PredictOptions
from .prediction_folder import PredictionFolder
from .torchrun import merge, predict_ranks


def predict_files(run: str | Path, inputs: list[str | Path], out: str | Path, opts: PredictOptions = PredictOptions(),
                  say=None) -> dict:
    """Predict every image under ``inputs`` into ``out``; returns counts, throughput and backend notes.

    ``say`` reports the slow steps of a first call (export, backend checks) as they start."""
    opts.check()
    sub_path = Path(opts.submission) if opts.submission else None
    if sub_path is not None and sub_path.is_dir():
        raise PneumoscopeError(f"--submission {sub_path}: is a folder; name the CSV file to write")
    if sub_path is not None:  # said now, not after every image is predicted
        check_writable_folder(sub_path.resolve().parent, "--submission: the folder of")
    for folder, flag in ((Path(out), "--out"), *(((Path(opts.dicom_out), "--dicom-out"),) if opts.dicom_out else ())):
        if holds_a_model(folder):
            raise PneumoscopeError(f"{flag} {folder}: is a run or study folder; predictions go into a folder of their own")
    # one entry per file, however named; never the pictures of this or an earlier call under --out, nor
    # the DICOM results under --dicom-out (another call's results elsewhere are known by their header)
    own = [Path(out).resolve()] + ([Path(opts.dicom_out).resolve()] if opts.dicom_out else [])
    files = [f for f in dict.fromkeys(_resolve(f) for f in list_images(list(inputs)))
             if not any(f.is_relative_to(o) for o in own)]
    if not files:
        raise PneumoscopeError(f"no image files found in the inputs (the output folder {out} is not read)")
    if opts.dicom_out:
        _check_dicom_inputs(files, Path(opts.dicom_out))
    folder = PredictionFolder(out, opts.gradcam, opts.overlay_size > 0)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: this process takes its share
        return predict_ranks(folder, run, files, sub_path, opts, say)
    with locks.hold(folder.root, "predict"):
        if folder.parts.is_dir():  # a torchrun job was killed before it merged: its rows count as done
            merge(folder, files, set())
        return predict_into(folder, run, files, sub_path, opts, say)


def _check_dicom_inputs(files: list[Path], dicom_out: Path) -> None:
    """DICOM results are made of DICOM sources only: a PNG among the inputs is said before anything is written."""
    from ..data.io import is_dicom

    raster = [f for f in files if f.exists() and not is_dicom(f)]
    if raster:
        more = f" (and {len(raster) - 1} more)" if len(raster) > 1 else ""
        raise PneumoscopeError(f"--dicom-out: {raster[0]}{more} is not DICOM; DICOM results (SEG, SR, overlay) go into "
                               "the source's study, so they need DICOM inputs")
    check_writable_folder(dicom_out, "--dicom-out")


def _resolve(path: Path) -> Path:
    """The resolved path of an input; a broken symbolic link stays itself (it is reported as such)."""
    return path.resolve() if path.exists() else path.absolute()
