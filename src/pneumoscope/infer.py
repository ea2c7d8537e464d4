"""Prediction over DICOM/PNG files and folders with a trained run.

For each image: a mask PNG (0/255, the image's own size) and an overlay PNG; for the
whole call: ``predictions.csv`` (file, width, height, mask area in pixels, max
probability, and P(pneumothorax) with the decision when the run has a stage-2 classifier).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .data.cache import resize_image
from .data.io import list_images, read_image, to_uint8
from .engine import seg_forward
from .errors import PneumoscopeError
from .overlay import overlay
from .runfiles import load_model

CSV_FIELDS = ["file", "width", "height", "mask_area_px", "max_prob"]
STAGE2_FIELDS = ["p_pneumothorax", "decision"]


@dataclass
class Predictor:
    """A loaded run: stage-1 U-Net, and the stage-2 classifier when the run has one."""

    model: torch.nn.Module
    size: int
    device: torch.device
    threshold: float = 0.5
    classifier: object | None = None  # fitted stage-2 estimator (predict_proba)
    phi: torch.nn.Module | None = None  # its feature extractor
    cls_threshold: float | None = None

    @classmethod
    def from_run(cls, run: str | Path, device: str = "auto") -> "Predictor":
        """Load the best checkpoint of a run, and ``stage2/`` when present."""
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        model, cfg = load_model(run, dev)
        pred = cls(model, cfg.data.size, dev, cfg.train.threshold)
        s2 = Path(run) / "stage2"
        if (s2 / "classifier.joblib").is_file():
            import joblib

            from .stage2.extractors import build_extractor

            info = json.loads((s2 / "stage2.json").read_text())
            pred.classifier = joblib.load(s2 / "classifier.joblib")
            pred.phi = build_extractor(info["feature_extractor"], model)[0].to(dev)
            pred.cls_threshold = float(info["threshold"])
        return pred

    def predict(self, images: list[np.ndarray], metas: list[dict]) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Probability maps at each image's own size, and P(pneumothorax) when stage 2 is loaded."""
        u8 = np.stack([to_uint8(resize_image(img, self.size)) for img in images])
        p_cls = None
        if self.classifier is not None:
            from .stage2.features import feature_rows

            X, probs, _ = feature_rows(self.model, self.phi, u8, [(m.get("sex", ""), m.get("age"), m.get("view", ""))
                                                                   for m in metas], self.device)
            p_cls = self.classifier.predict_proba(X)[:, 1]
        else:
            probs = seg_forward(self.model, u8, self.device)[0][:, 0].cpu().numpy()
        full = [cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) for p, img in zip(probs, images)]
        return full, p_cls


def _unique_stems(files: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for f in files:
        k = seen.get(f.stem, 0)
        seen[f.stem] = k + 1
        out.append(f.stem if k == 0 else f"{f.stem}_{k}")
    return out


def predict_files(run: str | Path, inputs: list[str | Path], out: str | Path, batch_size: int = 8,
                  skip_bad: bool = False, device: str = "auto") -> list[dict]:
    """Predict masks for files/folders; writes masks, overlays and ``predictions.csv`` to ``out``."""
    files = list_images(list(inputs))
    if not files:
        raise PneumoscopeError("no image files found in the inputs")
    pred = Predictor.from_run(run, device)
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    names = _unique_stems(files)
    for start in range(0, len(files), batch_size):
        chunk, images, metas = [], [], []
        for f, name in zip(files[start : start + batch_size], names[start : start + batch_size]):
            try:
                img, meta = read_image(f)
            except PneumoscopeError as exc:
                if not skip_bad:
                    raise
                skipped.append({"file": str(f), "reason": str(exc)})
                continue
            chunk.append((f, name))
            images.append(img)
            metas.append(meta)
        if not images:
            continue
        probs, p_cls = pred.predict(images, metas)
        for k, ((f, name), img, prob) in enumerate(zip(chunk, images, probs)):
            mask = prob > pred.threshold
            cv2.imwrite(str(out / "masks" / f"{name}.png"), mask.astype(np.uint8) * 255)
            cv2.imwrite(str(out / "overlays" / f"{name}.png"), overlay(img, mask))
            rows.append({"file": str(f), "width": img.shape[1], "height": img.shape[0],
                         "mask_area_px": int(mask.sum()), "max_prob": round(float(prob.max()), 6)})
            if p_cls is not None:
                rows[-1]["p_pneumothorax"] = round(float(p_cls[k]), 6)
                rows[-1]["decision"] = "pneumothorax" if p_cls[k] >= pred.cls_threshold else "normal"
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS + (STAGE2_FIELDS if pred.classifier is not None else []))
        w.writeheader()
        w.writerows(rows)
    if skipped:
        with open(out / "skipped.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["file", "reason"])
            w.writeheader()
            w.writerows(skipped)
    return rows
