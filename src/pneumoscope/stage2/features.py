"""Stage-2 features of cached images: stage-1 probability maps, Phi(I, M), mask statistics.

Computed in batches (progress bar on a terminal) and cached in the run folder; the cache
file's key hashes the dataset cache, the rows, the extractor and the stage-1 weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.cache import Cache
from ..stage1.engine import seg_forward
from .maskstats import MASK_STAT_NAMES, META_NAMES, mask_stats, meta_features


@dataclass
class FeatureSet:
    """Features of some images, in row order."""

    X: np.ndarray  # float32 (N, D)
    names: list[str]
    ids: np.ndarray  # str (N,)
    labels: np.ndarray  # int (N,), -1 unknown
    probs: np.ndarray  # float16 (N, S, S): stage-1 probability maps

@torch.no_grad()
def feature_rows(phi: nn.Module, images: np.ndarray, probs: np.ndarray, cls_logits: np.ndarray | None,
                 metas: list[tuple], device: torch.device) -> tuple[np.ndarray, list[str]]:
    """Features of a batch: uint8 images (N, S, S) at the stage-1 size, their stage-1
    probability maps (N, S, S), head logits (or None) and (sex, age, view) per image.
    Returns the feature matrix and the column names."""
    x01 = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None].to(device)
    prob = torch.from_numpy(np.asarray(probs, dtype=np.float32))[:, None].to(device)
    f_img, f_mask = phi(x01).cpu().numpy(), phi(prob).cpu().numpy()
    stats = np.stack([mask_stats(p) for p in np.asarray(probs, dtype=np.float32)])
    meta = np.stack([meta_features(*m) for m in metas])
    extra = [1.0 / (1.0 + np.exp(-np.asarray(cls_logits, dtype=np.float32).reshape(-1, 1)))] if cls_logits is not None else []
    names = ([f"phi_img_{i}" for i in range(f_img.shape[1])] + [f"phi_mask_{i}" for i in range(f_mask.shape[1])]
             + MASK_STAT_NAMES + (["cls_head_prob"] if extra else []) + META_NAMES)
    return np.concatenate([f_img, f_mask, stats, *extra, meta], axis=1).astype(np.float32), names


def compute_features(unet: nn.Module, phi: nn.Module, cache: Cache, rows: np.ndarray, device: torch.device,
                     batch_size: int = 16, cache_file: Path | None = None, model_tag: str = "") -> FeatureSet:
    """Features of cache rows ``rows``; reads/writes ``cache_file`` when given.

    The file name carries a hash of the cache, the rows, the extractor and ``model_tag`` (which
    should identify the stage-1 weights), so retraining never reuses stale features."""
    phi_id = f"{getattr(phi, 'name', '')}{(getattr(phi, 'record', None) or {}).get('sha256', '')}"  # which weights phi has
    key = hashlib.sha256(f"{cache.root}|{phi_id}|{model_tag}|{rows.tolist()}".encode()).hexdigest()[:16]
    path = cache_file.with_name(f"{cache_file.stem}-{key}.npz") if cache_file else None
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        return FeatureSet(z["X"], z["names"].tolist(), z["ids"], z["labels"], z["probs"])
    unet.eval().to(device)
    phi.eval().to(device)
    idx = cache.index.iloc[rows]
    metas = list(idx[["sex", "age", "view"]].itertuples(index=False, name=None))
    chunks = tqdm(range(0, len(rows), batch_size), desc="stage-2 features", leave=False, disable=None)
    parts, probs, names = [], [], []
    for start in chunks:
        images = np.asarray(cache.images[rows[start : start + batch_size]])
        prob_t, cls_logit = seg_forward(unet, images, device)
        prob = prob_t[:, 0].cpu().numpy()
        X, names = feature_rows(phi, images, prob, None if cls_logit is None else cls_logit.cpu().numpy(),
                                metas[start : start + batch_size], device)
        parts.append(X)
        probs.append(prob.astype(np.float16))
    fs = FeatureSet(np.concatenate(parts), names, idx["id"].to_numpy(dtype=str), idx["label"].to_numpy().astype(int),
                    np.concatenate(probs))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, X=fs.X, names=np.array(fs.names), ids=fs.ids, labels=fs.labels, probs=fs.probs)
    return fs
