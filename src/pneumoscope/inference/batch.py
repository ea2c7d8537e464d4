"""Prediction of a list of DICOM/PNG files with a trained run, streamed into an output folder
(:mod:`.prediction_folder`; the entry point that lists the inputs and dispatches is :mod:`.predict`).

Files are decoded by worker threads while the model runs; at most two batches are in memory; the
pictures, rows and DICOM results are encoded and written behind by one writer thread, in order. A
rerun into the same folder skips images already in ``predictions.csv`` (matched by resolved path).
One ``predict`` at a time writes into a folder (its lock, :mod:`..locks`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from ..data.io import MAX_PIXELS, MIN_SIDE, check_file, is_dicom, read_image
from ..errors import PneumoscopeError, without_name
from ..pictures import result_caption
from .options import PredictOptions
from .prediction_folder import CSV_FIELDS, DICOM_FIELDS, STAGE2_FIELDS, PredictionFolder
from .predictor import Predictor


class Item(NamedTuple):
    """One input as read for prediction."""

    path: Path
    image: np.ndarray | None  # None: not predicted (``error`` says why)
    meta: dict
    error: str
    source: Any = None  # with DICOM results: a results.Source, or why the file cannot have any (str)
    ours: bool = False  # a result pneumoscope made: never predicted, said even without --skip-bad


def _read(path: Path, dicom: bool = False, max_pixels: int = MAX_PIXELS) -> Item:
    from ..data.dicom import read_dicom_dataset
    from ..dicom_results.algorithm import NOT_IMAGES, made_by_pneumoscope

    try:
        checked = check_file(path)
        if not is_dicom(checked):
            return Item(path, *read_image(checked, max_pixels, min_side=MIN_SIDE), "")
        img, meta, ds = read_dicom_dataset(str(checked), str(path), max_pixels, MIN_SIDE)
    except PneumoscopeError as exc:
        own = _own_result(path)  # an SR of ours has no pixels: known by its header
        return Item(path, None, {}, _not_again(path, own) if own else str(exc), None, bool(own))
    own = made_by_pneumoscope(ds)
    if own:
        return Item(path, None, {}, _not_again(path, own), None, True)
    if str(ds.get("SOPClassUID", "")) in NOT_IMAGES:
        return Item(path, None, {}, f"{path}: {NOT_IMAGES[str(ds.SOPClassUID)]}, not a radiograph")
    if not dicom:
        return Item(path, img, meta, "")
    from ..dicom_results.source import Source  # results go back as DICOM: the header they reference, read once

    try:
        return Item(path, img, meta, "", Source.of(ds, img, str(path)))
    except PneumoscopeError as exc:  # predicted all the same; its row says why it has no DICOM results
        return Item(path, img, meta, "", f"no DICOM results: {without_name(str(exc), str(path))}")


def _own_result(path: Path) -> str | None:
    """What result of pneumoscope's the DICOM file at ``path`` is, by its header (None: none, or unreadable)."""
    from ..dicom_results.algorithm import made_by_pneumoscope

    try:
        import pydicom

        return made_by_pneumoscope(pydicom.dcmread(str(path), stop_before_pixels=True, force=True))
    except Exception:  # unreadable: its own error says so
        return None


def _not_again(path: Path, kind: str) -> str:
    return f"{path}: pneumoscope's own {kind}, not a radiograph: not predicted again"


def stream(files: list[Path], batch_size: int, workers: int, dicom: bool = False,
           max_pixels: int = MAX_PIXELS) -> Iterator[list[Item]]:
    """Batches of decoded files, decoded ahead by ``workers`` threads (at most two batches held);
    with ``dicom``, each DICOM's header is kept for its DICOM results."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(_read, f, dicom, max_pixels) for f in files[:batch_size]]
        nxt = batch_size
        while pending:
            ahead = [pool.submit(_read, f, dicom, max_pixels) for f in files[nxt : nxt + batch_size]]
            nxt += batch_size
            yield [fut.result() for fut in pending]
            pending = ahead


def predict_into(folder: PredictionFolder, run: str | Path, files: list[Path], sub_path: Path | None,
                  opts: PredictOptions, say) -> dict:
    """Predict ``files`` into ``folder`` (the caller holds its lock). With ``--no-resume`` over earlier
    results, everything is written into a staging folder first and replaces the earlier results only
    when the whole call succeeded: a failed call leaves the folder as it was."""
    if not opts.resume and folder.has_results():
        staging = folder.staging()
        try:
            out = predict_into(staging, run, files, None, dataclasses.replace(opts, resume=True), say)
            folder.take(staging)
        finally:
            shutil.rmtree(staging.root, ignore_errors=True)
        if sub_path is not None:
            folder.write_submission(sub_path, folder.rows())
        return out
    earlier = folder.rows()
    todo = plan(folder, earlier, files)
    pred = Predictor(run, opts, say) if todo else None
    fields = check_fields(folder, earlier, pred, bool(opts.dicom_out))
    n_done, skipped, seconds = predict_loop(folder, pred, todo, fields, opts)
    n_skipped = folder.write_skipped({str(f) for f in todo}, skipped)
    if sub_path is not None:
        folder.write_submission(sub_path, folder.rows())
    return summary(n_done, len(skipped), n_skipped, len(files) - len(todo), seconds, pred, skipped, folder.dicom_notes)


def plan(folder: PredictionFolder, earlier: list[dict], files: list[Path]) -> list[Path]:
    """The files still to predict; every picture name fixed first (the earlier rows' replayed, then
    each input's in order), so that names never depend on which process predicts which file."""
    for r in earlier:
        folder.name_for(r["file"])
    for f in files:
        folder.name_for(str(f))
    done = {r["file"] for r in earlier}
    return [f for f in files if str(f) not in done]


def check_fields(folder: PredictionFolder, earlier: list[dict], pred: Predictor | None, dicom: bool = False) -> list[str]:
    """The columns of predictions.csv: the earlier rows' when nothing is left to predict, else the run's
    (with stage 2's when it has a classifier, and the DICOM note with DICOM results); a folder written
    with other columns is refused."""
    fields = list(earlier[0]) if pred is None else (
        CSV_FIELDS + (STAGE2_FIELDS if pred.stage2 is not None else []) + (DICOM_FIELDS if dicom else []))
    if earlier and list(earlier[0]) != fields:
        why = ("without --dicom-out" if "dicom_note" in fields else "with --dicom-out") if (
            "dicom_note" in fields) != ("dicom_note" in earlier[0]) else "with other columns (another run?)"
        raise PneumoscopeError(f"{folder.csv}: written {why}; use another --out or --no-resume")
    return fields


def summary(n_done: int, n_skipped: int, skipped_total: int, already: int, seconds: float, pred: Predictor | None,
            skipped_files: list[dict] = (), dicom_notes: list[tuple[str, str]] = ()) -> dict:
    """What predict_files returns: counts, throughput, the backend's notes, and this process's skipped
    files (rows of skipped.csv) and DICOM notes (file, note)."""
    return {"predicted": n_done, "skipped": n_skipped, "skipped_total": skipped_total, "already_done": already,
            "skipped_files": list(skipped_files), "dicom_notes": list(dicom_notes),
            "seconds": seconds, "images_per_second": n_done / seconds if seconds > 0 and n_done else 0.0,
            "model_seconds": pred.model_seconds if pred is not None else 0.0,
            "notes": pred.notes if pred is not None else []}


def predict_loop(folder: PredictionFolder, pred: Predictor | None, todo: list[Path], fields: list[str],
                 opts: PredictOptions) -> tuple[int, list[dict], float]:
    """Predict ``todo`` into ``folder`` (its rows into ``folder.csv``); returns (predicted, skipped, seconds)."""
    bar = tqdm(total=len(todo), desc="predict", unit="img", disable=None)
    t0, n_done, skipped = time.perf_counter(), 0, []
    workers = opts.workers or max(1, (os.cpu_count() or 2) // 2)
    if opts.dicom_out:  # highdicom and pydicom's code tables only when DICOM results are asked for (~0.13 s)
        from ..dicom_results.build import Results, make_results, write_results

    def write(good: list, results: list, heats: list) -> None:  # on the writer thread, batch after batch
        rows = []
        for (f, img, _, source), res, heat in zip(good, results, heats):
            folder.write_pictures(folder.name_for(str(f)), img, res.mask, heat, opts.overlay_size,
                                  result_caption(res.decision, res.p_pneumothorax, pred.cls_threshold, res.mask_area_px))
            row = {"file": str(f), "width": img.shape[1], "height": img.shape[0], "mask_area_px": res.mask_area_px,
                   "max_prob": round(res.max_prob, 6)}
            if res.p_pneumothorax is not None:
                row["p_pneumothorax"] = round(res.p_pneumothorax, 6)
                row["decision"] = res.decision
                row["disagreement"] = res.disagreement or ""
            if opts.dicom_out:
                made = Results({}, (source,)) if isinstance(source, str) else make_results(
                    res, source, pred.algorithm, opts.dicom_objects)
                write_results(made, opts.dicom_out, folder.name_for(str(f)))
                row["dicom_note"] = made.note
                if made.note:
                    folder.dicom_notes.append((str(f), made.note))
            rows.append(row)
        folder.append(fields, rows)  # after the pictures: a row means its mask is on disk

    # decode ahead (reader threads), predict (here), encode and write behind (one writer thread, in order)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumoscope-write") as writer:
        pending = None
        for batch in stream(todo, opts.batch_size, workers, bool(opts.dicom_out), int(opts.max_megapixels * 1e6)):
            bad = [{"file": str(i.path), "reason": i.error} for i in batch if i.image is None]
            refused = [i for i in batch if i.image is None and not i.ours]
            if refused and not opts.skip_bad:
                raise PneumoscopeError(refused[0].error)
            skipped += bad
            good = [(i.path, i.image, i.meta, i.source) for i in batch if i.image is not None]
            bar.update(len(batch))
            if not good:
                continue
            images = [g[1] for g in good]
            results = pred.predict_batch(images, [g[2] for g in good])
            heats = pred.gradcam(images) if opts.gradcam else [None] * len(good)
            if pending is not None:
                pending.result()  # at most one batch waits to be written (and its errors surface here)
            pending = writer.submit(write, good, results, heats)
            n_done += len(good)
            bar.set_postfix(img_per_s=f"{n_done / (time.perf_counter() - t0):.2f}")
        if pending is not None:
            pending.result()
    bar.close()
    return n_done, skipped, time.perf_counter() - t0
