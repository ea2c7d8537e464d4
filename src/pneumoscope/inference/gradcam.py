"""Grad-CAM of the stage-1 model's image-level decision — a visual aid, not a validated explanation.

The decision score is the classification head's logit when the model has one, else the mean
of the top 1 % mask logits ("how sure is the model that some pneumothorax is there"). The
map is ReLU(sum_c w_c A_c) over the deepest encoder feature map A, with w_c the spatial mean
of the score's gradient, upsampled to the input size and scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..stage1.engine import split_output


def gradcam(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Heatmaps (N, H, W) in [0, 1] for standardised inputs ``x`` (N, 1, H, W)."""
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inp, out):
        feat = out[-1]
        feat.retain_grad()
        captured["A"] = feat

    handle = model.encoder.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(False)
            logits, cls_logit = split_output(model(x))
            if cls_logit is not None:
                score = cls_logit.view(-1)
            else:
                flat = logits.flatten(1)
                score = flat.topk(max(1, flat.shape[1] // 100), dim=1).values.mean(1)
            model.zero_grad(set_to_none=True)
            score.sum().backward()
    finally:
        handle.remove()
    a, g = captured["A"].detach(), captured["A"].grad.detach()
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = cam.flatten(1).min(1).values.view(-1, 1, 1)
    hi = cam.flatten(1).max(1).values.view(-1, 1, 1)
    return ((cam - lo) / (hi - lo).clamp_min(1e-8)).cpu().numpy()
