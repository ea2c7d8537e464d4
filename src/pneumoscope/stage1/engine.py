"""Shared pieces of training and inference: seeding, forward, evaluation loop."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..data.transforms import model_input
from .metrics import SegMetrics

if TYPE_CHECKING:  # smp's losses: imported by whoever builds one, not by every user of this module
    from .losses import CompositeLoss


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def split_output(out: torch.Tensor | tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mask logits, image logit or None) from a U-Net with or without a classification head."""
    if isinstance(out, (tuple, list)):
        return out[0], out[1]
    return out, None


def autocast(device: torch.device, enabled: bool):
    """bf16/fp16 autocast on CUDA when enabled; a no-op context on CPU."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image, mask and label of a batch on ``device``."""
    x = batch["image"].to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, batch["mask"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)


@torch.no_grad()
def seg_forward(model: nn.Module, images_u8: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stage-1 probabilities (N, 1, S, S) and head logits (or None) of uint8 images (N, S, S),
    standardised as in training."""
    x = torch.from_numpy(model_input(images_u8)).to(device)
    logits, cls_logit = split_output(model(x))
    return torch.sigmoid(logits.float()), cls_logit


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[dict], loss_fn: CompositeLoss, device: torch.device,
             threshold: float = 0.5, amp: bool = False, channels_last: bool = False,
             collect: list | None = None) -> SegMetrics:
    """Loss and segmentation metrics of ``model`` over ``batches`` (this process's share).

    When ``collect`` is a list, each batch's probability maps (float16, N x S x S) are appended."""
    model.eval()
    acc = SegMetrics()
    for batch in batches:
        x, y, label = to_device(batch, device, channels_last)
        with autocast(device, amp):
            logits, cls_logit = split_output(model(x))
        loss, _ = loss_fn(logits, y, cls_logit, label)
        prob = torch.sigmoid(logits.float())
        acc.update(prob > threshold, y, float(loss))
        if collect is not None:
            collect.append(prob[:, 0].cpu().numpy().astype(np.float16))
    return acc
