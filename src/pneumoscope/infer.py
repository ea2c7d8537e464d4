"""Prediction over DICOM/PNG files and folders with a trained run, streamed.

Per image: ``masks/<name>.png`` (0/255, the image's own size), ``overlays/<name>.png`` and,
with ``gradcam``, ``gradcam/<name>.png``. Per call: ``predictions.csv`` (file, size, mask
area, max probability, and P(pneumothorax) with the decision when the run has a stage-2
classifier), ``skipped.csv`` for unreadable files (``skip_bad``) and, when asked, a SIIM
submission CSV. Files are decoded by worker threads while the model runs; at most two
batches are in memory. Re-running on the same output folder skips files already done.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from . import backend_select
from .backends import with_hflip_tta
from .data.cache import resize_image
from .data.io import list_images, read_image, to_uint8
from .data.rle import encode
from .data.transforms import standardize
from .errors import PneumoscopeError
from .overlay import overlay
from .postprocess import Rule
from .runfiles import load_model

CSV_FIELDS = ["file", "width", "height", "mask_area_px", "max_prob"]
STAGE2_FIELDS = ["p_pneumothorax", "decision"]


@dataclass(frozen=True)
class PredictOptions:
    """How to predict."""

    backend: str = "auto"  # auto (fastest matching float32) | torch | onnx
    precision: str = "auto"  # torch backend: auto | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the torch backend
    tta: str = "none"  # none | hflip
    postprocess: bool = True  # apply RUN/postprocess.json when the run has one
    batch_size: int = 8
    workers: int = 2  # decoding threads
    gradcam: bool = False
    submission: str | None = None  # SIIM submission CSV path
    skip_bad: bool = False
    device: str = "auto"
    resume: bool = True


class Predictor:
    """A loaded run: stage-1 U-Net on a chosen backend, post-processing rule, stage-2 classifier."""

    def __init__(self, run: str | Path, opts: PredictOptions = PredictOptions()) -> None:
        self.run, self.opts = Path(run), opts
        want = opts.device
        self.device = torch.device("cuda" if want == "auto" and torch.cuda.is_available() else ("cpu" if want == "auto" else want))
        self.model, cfg = load_model(self.run, self.device)
        self.size, self.threshold, self.encoder = cfg.data.size, cfg.train.threshold, cfg.model.encoder
        rule_file = self.run / "postprocess.json"
        self.rule = Rule.load(rule_file) if opts.postprocess and rule_file.is_file() else Rule(self.threshold, 0.0, self.threshold)
        self.backend = None
        self.notes: list[str] = []
        self.classifier = self.phi = self.cls_threshold = None
        s2 = self.run / "stage2"
        if (s2 / "classifier.joblib").is_file():
            import joblib

            from .stage2.extractors import build_extractor

            info = json.loads((s2 / "stage2.json").read_text())
            self.classifier = joblib.load(s2 / "classifier.joblib")
            self.phi = build_extractor(info["feature_extractor"], self.model)[0].to(self.device)
            self.cls_threshold = float(info["threshold"])

    def prepare(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images at the model size and the standardised network input (N, 1, S, S)."""
        u8 = np.stack([to_uint8(resize_image(img, self.size)) for img in images])
        return u8, np.stack([standardize(im)[None] for im in u8]).astype(np.float32)

    def _ensure_backend(self, x: np.ndarray) -> None:
        if self.backend is not None:
            return
        onnx_path = None
        if self.opts.backend in ("auto", "onnx"):
            onnx_path = self.run / "model.onnx"
            if not onnx_path.is_file():
                try:
                    from .export import export_onnx

                    export_onnx(self.run)
                except PneumoscopeError as exc:
                    if self.opts.backend == "onnx":
                        raise
                    self.notes.append(f"onnx unavailable ({exc})")
                    onnx_path = None
        self.backend, notes = backend_select.choose(self.model, self.device, x, self.opts.backend, self.opts.precision,
                                                    self.opts.compile, onnx_path, self.run / "backend.json")
        self.notes += notes

    def predict(self, images: list[np.ndarray], metas: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
        """Probability maps and masks at each image's own size; P(pneumothorax) with stage 2."""
        u8, x = self.prepare(images)
        self._ensure_backend(x)
        probs, cls = with_hflip_tta(self.backend, x) if self.opts.tta == "hflip" else self.backend(x)
        p_cls = None
        if self.classifier is not None:
            from .stage2.features import feature_rows

            X, _ = feature_rows(self.phi, u8, probs, cls, [(m.get("sex", ""), m.get("age"), m.get("view", "")) for m in metas],
                                self.device)
            p_cls = self.classifier.predict_proba(X)[:, 1]
        full = [cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) for p, img in zip(probs, images)]
        return full, [self.rule.apply(p) for p in full], p_cls

    def gradcam(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Grad-CAM heatmaps at each image's own size (float32 model, gradients on)."""
        from .gradcam import gradcam

        _, x = self.prepare(images)
        heat = gradcam(self.model.float(), torch.from_numpy(x).to(self.device))
        return [cv2.resize(h, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) for h, img in zip(heat, images)]


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
    fields = CSV_FIELDS + (STAGE2_FIELDS if pred.classifier is not None else [])
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="predict", unit="img")
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
        probs, masks, p_cls = pred.predict(images, [g[2] for g in good])
        heats = pred.gradcam(images) if opts.gradcam else [None] * len(good)
        rows, subs = [], []
        for k, ((f, img, _), prob, mask, heat) in enumerate(zip(good, probs, masks, heats)):
            name = names[f]
            cv2.imwrite(str(out / "masks" / f"{name}.png"), mask.astype(np.uint8) * 255)
            cv2.imwrite(str(out / "overlays" / f"{name}.png"), overlay(img, mask))
            if heat is not None:
                from .gradcam import heatmap_overlay
                cv2.imwrite(str(out / "gradcam" / f"{name}.png"), heatmap_overlay(img, heat))
            row = {"file": str(f), "width": img.shape[1], "height": img.shape[0], "mask_area_px": int(mask.sum()),
                   "max_prob": round(float(prob.max()), 6)}
            if p_cls is not None:
                row["p_pneumothorax"] = round(float(p_cls[k]), 6)
                row["decision"] = "pneumothorax" if p_cls[k] >= pred.cls_threshold else "normal"
            rows.append(row)
            subs.append({"ImageId": f.stem, "EncodedPixels": encode(mask)})
        _append_csv(csv_path, fields, rows)
        if sub_path is not None:
            _append_csv(sub_path, ["ImageId", "EncodedPixels"], subs)
        n_done += len(good)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(img_per_s=f"{n_done / (time.perf_counter() - t0):.2f}")
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    return {"predicted": n_done, "skipped": n_bad, "already_done": len(files) - len(todo), "seconds": seconds,
            "images_per_second": n_done / seconds if seconds > 0 and n_done else 0.0, "notes": pred.notes}
