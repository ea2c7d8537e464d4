"""A fitted stage-2 classifier, loaded from a run for inference: P(pneumothorax) of images
from their stage-1 output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import PneumoscopeError
from ..folders import Run
from .extractors import build_extractor
from .features import feature_rows
from .saved import PortableClassifier


@dataclass
class Stage2Model:
    """The classifier of a run, its feature extractor phi and its decision threshold."""

    classifier: PortableClassifier  # predict_proba(X) -> (N, 2)
    phi: nn.Module
    threshold: float
    device: torch.device
    extractor: str = "densenet121"  # which features phi gives: densenet121 or seg-encoder (the U-Net's own encoder)

    @classmethod
    def load(cls, run: Run, unet: nn.Module, device: torch.device) -> Stage2Model | None:
        """The run's classifier, or None when the run has none."""
        if not run.has_classifier():
            return None
        spec, boosters, summary = run.load_classifier()  # checked against its schema: one line when damaged
        names = [str(run.booster_name(i)) for i in range(len(boosters))]
        classifier = PortableClassifier.from_data(spec, boosters, names, int(summary["n_features"]))
        local = summary.get("feature_weights") or {}
        phi = build_extractor(summary["feature_extractor"], unet, _densenet_file(local), local.get("sha256"))[0].to(device)
        return cls(classifier, phi, float(summary["threshold"]), device, str(getattr(phi, "name", summary["feature_extractor"])))

    def describe(self, encoder: str) -> str:
        """What stage 2 is, as results name it (e.g. "XGBoost on DenseNet121 features")."""
        features = "DenseNet121 features" if self.extractor == "densenet121" else f"{encoder} encoder features"
        return f"XGBoost on {features}"

    def probability(self, images_u8: np.ndarray, probs: np.ndarray, cls_logits: np.ndarray | None,
                    metas: list[dict]) -> np.ndarray:
        """P(pneumothorax) of a batch: uint8 images and stage-1 probability maps at the model
        size, head logits (or None) and each image's metadata (sex, age, view)."""
        X, _ = feature_rows(self.phi, images_u8, probs, cls_logits,
                            [(m.get("sex", ""), m.get("age"), m.get("view", "")) for m in metas], self.device)
        return self.classifier.predict_proba(X)[:, 1]

    def decide(self, p: float) -> str:
        """``pneumothorax`` or ``normal`` at the run's threshold."""
        return "pneumothorax" if p >= self.threshold else "normal"


def _densenet_file(record: dict) -> str | None:
    """Where the local DenseNet file a classifier was fitted with is now: its recorded path, else a
    file of the same name in the torch hub cache (a run copied to another machine); None without one."""
    if not record:
        return None
    path = Path(record["path"])
    if path.is_file():
        return str(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / path.name
    if cached.is_file():
        return str(cached)
    raise PneumoscopeError(f"this run's classifier was fitted on DenseNet121 features from {path}, which is not there "
                           f"(nor {cached}): copy that file back (sha256 {record['sha256'][:12]}...)")
