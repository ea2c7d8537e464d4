"""Prediction over DICOM/PNG files and folders with a trained run, streamed into an output folder.

Per image: ``masks/<name>.png`` (0/255, the image's own size), ``overlays/<name>.png`` and,
with ``gradcam``, ``gradcam/<name>.png``. Per call: ``predictions.csv`` (file, size, mask
area, max probability, and P(pneumothorax) with the decision when the run has a stage-2
classifier), ``skipped.csv`` for unreadable files (``skip_bad``) and, when asked, a SIIM
submission CSV. Files are decoded by worker threads while the model runs; at most two
batches are in memory. Re-running on the same output folder skips files already done.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.io import list_images, read_image
from ..data.rle import encode
from ..errors import PneumoscopeError
from .overlay import overlay
from .predictor import PredictOptions, Predictor

CSV_FIELDS = ["file", "width", "height", "mask_area_px", "max_prob"]
STAGE2_FIELDS = ["p_pneumothorax", "decision"]


def _unique_names(files: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for f in files:
        k = seen.get(f.stem, 0)
        seen[f.stem] = k + 1
        out.append(f.stem if k == 0 else f"{f.stem}_{k}")
    return out


def _read(path: Path) -> tuple[Path, np.ndarray | None, dict, str]:
    try:
        img, meta = read_image(path)
        return path, img, meta, ""
    except PneumoscopeError as exc:
        return path, None, {}, str(exc)


def stream(files: list[Path], batch_size: int, workers: int) -> Iterator[list[tuple[Path, np.ndarray | None, dict, str]]]:
    """Batches of decoded files, decoded ahead by ``workers`` threads (at most two batches held)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(_read, f) for f in files[:batch_size]]
        nxt = batch_size
        while pending:
            ahead = [pool.submit(_read, f) for f in files[nxt : nxt + batch_size]]
            nxt += batch_size
            yield [fut.result() for fut in pending]
            pending = ahead


def _append_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


def predict_files(run: str | Path, inputs: list[str | Path], out: str | Path, opts: PredictOptions = PredictOptions()) -> dict:
    """Predict every image under ``inputs`` into ``out``; returns counts, throughput and backend notes."""
    files = list_images(list(inputs))
    if not files:
        raise PneumoscopeError("no image files found in the inputs")
    out = Path(out)
    for sub in ("masks", "overlays") + (("gradcam",) if opts.gradcam else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    csv_path = out / "predictions.csv"
    names = dict(zip(files, _unique_names(files)))
    done: set[str] = set()
    if opts.resume and csv_path.is_file():
        with open(csv_path, newline="") as fh:
            done = {r["file"] for r in csv.DictReader(fh)}
    elif csv_path.is_file():
        csv_path.unlink()
    sub_path = Path(opts.submission) if opts.submission else None
    if sub_path is not None and not opts.resume:
        sub_path.unlink(missing_ok=True)
    todo = [f for f in files if str(f) not in done]
    pred = Predictor(run, opts)
    fields = CSV_FIELDS + (STAGE2_FIELDS if pred.stage2 is not None else [])
    bar = tqdm(total=len(todo), desc="predict", unit="img", disable=None)
    t0, n_done, n_bad = time.perf_counter(), 0, 0
    for batch in stream(todo, opts.batch_size, opts.workers):
        bad = [{"file": str(f), "reason": err} for f, img, _, err in batch if img is None]
        if bad and not opts.skip_bad:
            raise PneumoscopeError(bad[0]["reason"])
        if bad:
            _append_csv(out / "skipped.csv", ["file", "reason"], bad)
            n_bad += len(bad)
        good = [(f, img, meta) for f, img, meta, _ in batch if img is not None]
        if not good:
            continue
        images = [g[1] for g in good]
        results = pred.predict_batch(images, [g[2] for g in good])
        heats = pred.gradcam(images) if opts.gradcam else [None] * len(good)
        rows, subs = [], []
        for (f, img, _), res, heat in zip(good, results, heats):
            name = names[f]
            cv2.imwrite(str(out / "masks" / f"{name}.png"), res.mask.astype(np.uint8) * 255)
            cv2.imwrite(str(out / "overlays" / f"{name}.png"), overlay(img, res.mask))
            if heat is not None:
                from .gradcam import heatmap_overlay
                cv2.imwrite(str(out / "gradcam" / f"{name}.png"), heatmap_overlay(img, heat))
            row = {"file": str(f), "width": img.shape[1], "height": img.shape[0], "mask_area_px": res.mask_area_px,
                   "max_prob": round(res.max_prob, 6)}
            if res.p_pneumothorax is not None:
                row["p_pneumothorax"] = round(res.p_pneumothorax, 6)
                row["decision"] = res.decision
            rows.append(row)
            subs.append({"ImageId": f.stem, "EncodedPixels": encode(res.mask)})
        _append_csv(csv_path, fields, rows)
        if sub_path is not None:
            _append_csv(sub_path, ["ImageId", "EncodedPixels"], subs)
        n_done += len(good)
        bar.update(len(batch))
        bar.set_postfix(img_per_s=f"{n_done / (time.perf_counter() - t0):.2f}")
    bar.close()
    seconds = time.perf_counter() - t0
    return {"predicted": n_done, "skipped": n_bad, "already_done": len(files) - len(todo), "seconds": seconds,
            "images_per_second": n_done / seconds if seconds > 0 and n_done else 0.0, "notes": pred.notes}
