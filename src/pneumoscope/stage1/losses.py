"""The paper's composite segmentation loss (Eq. 12) and the joint objective (Eq. 1).

L_seg = alpha*BCE + beta*Dice + gamma*Focal, with Dice smoothing epsilon (Eq. 14) and
focal focusing parameter and alpha_t (Eq. 15); L = L_seg + lambda*BCE(head, label).
Dice and Focal are segmentation-models-pytorch's implementations.
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss
from torch import nn
from torch.nn import functional as F

from ..config import LossConfig, loss_weights


class CompositeLoss(nn.Module):
    """Weighted BCE + Dice + Focal on logits; optional image-level BCE on the head's logit."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.dice = DiceLoss(mode="binary", from_logits=True, smooth=cfg.dice_smooth)
        self.focal = FocalLoss(mode="binary", alpha=cfg.focal_alpha, gamma=cfg.focal_gamma)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor, cls_logit: torch.Tensor | None = None,
                label: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (as floats, for logging)."""
        logits, mask = logits.float(), mask.float()
        parts = {
            "bce": F.binary_cross_entropy_with_logits(logits, mask),
            "dice": self.dice(logits, mask),
            "focal": self.focal(logits, mask),
        }
        c = self.cfg
        w_bce, w_dice, w_focal = loss_weights(c)
        total = w_bce * parts["bce"] + w_dice * parts["dice"] + w_focal * parts["focal"]
        if c.cls_weight > 0 and cls_logit is not None and label is not None:
            parts["cls"] = F.binary_cross_entropy_with_logits(cls_logit.float().view(-1), label.float().view(-1))
            total = total + c.cls_weight * parts["cls"]
        return total, {k: float(v.detach()) for k, v in parts.items()}
