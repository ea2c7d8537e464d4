"""Prediction over DICOM/PNG files and folders with a trained run.

For each image: a mask PNG (0/255, the image's own size) and an overlay PNG; for the
whole call: ``predictions.csv`` (file, width, height, mask area in pixels, max
probability).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .data.cache import resize_image
from .data.io import list_images, read_image
from .data.transforms import standardize
from .engine import split_output
from .errors import PneumoscopeError
from .overlay import overlay
from .runfiles import load_model

CSV_FIELDS = ["file", "width", "height", "mask_area_px", "max_prob"]


@dataclass
class Predictor:
    """A loaded stage-1 model that maps float images to probability maps at their own size."""

    model: torch.nn.Module
    size: int
    device: torch.device
    threshold: float = 0.5

    @classmethod
    def from_run(cls, run: str | Path, device: str = "auto") -> "Predictor":
        """Load the best checkpoint of a run."""
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        model, cfg = load_model(run, dev)
        return cls(model, cfg.data.size, dev, cfg.train.threshold)

    @torch.no_grad()
    def probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probability maps (float32, each the size of its input image)."""
        x = np.stack([standardize(resize_image(img, self.size))[None] for img in images])
        logits, _ = split_output(self.model(torch.from_numpy(x).to(self.device)))
        probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        return [cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) for p, img in zip(probs, images)]


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
        chunk, images = [], []
        for f, name in zip(files[start : start + batch_size], names[start : start + batch_size]):
            try:
                img, _ = read_image(f)
            except PneumoscopeError as exc:
                if not skip_bad:
                    raise
                skipped.append({"file": str(f), "reason": str(exc)})
                continue
            chunk.append((f, name))
            images.append(img)
        if not images:
            continue
        for (f, name), img, prob in zip(chunk, images, pred.probabilities(images)):
            mask = prob > pred.threshold
            cv2.imwrite(str(out / "masks" / f"{name}.png"), mask.astype(np.uint8) * 255)
            cv2.imwrite(str(out / "overlays" / f"{name}.png"), overlay(img, mask))
            rows.append({"file": str(f), "width": img.shape[1], "height": img.shape[0],
                         "mask_area_px": int(mask.sum()), "max_prob": round(float(prob.max()), 6)})
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    if skipped:
        with open(out / "skipped.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["file", "reason"])
            w.writeheader()
            w.writerows(skipped)
    return rows
