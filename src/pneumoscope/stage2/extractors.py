"""Feature extractors phi of the paper's Eq. 16: Phi(I, M) = [phi(I); phi(M)].

- ``densenet121``: torchvision's DenseNet121 with ImageNet weights (from the torch hub
  cache, or downloaded when a network is there), globally average-pooled, 1024 values.
- ``seg-encoder``: the trained stage-1 U-Net encoder, deepest feature map average-pooled;
  needs no download.
- ``auto``: DenseNet121 when its weights can be had, else the stage-1 encoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import PneumoscopeError
from ..network import host_reachable

EXTRACTORS = ("auto", "densenet121", "seg-encoder")
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _densenet_weights_file() -> Path:
    from torchvision.models import DenseNet121_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(DenseNet121_Weights.IMAGENET1K_V1.url).name


def densenet_available() -> bool:
    """True when DenseNet121 ImageNet weights are cached or downloadable."""
    return _densenet_weights_file().is_file() or host_reachable("download.pytorch.org")


class DenseNetPhi(nn.Module):
    """DenseNet121 (ImageNet) features of a one-channel image in [0, 1]: (N, 1024)."""

    name = "densenet121"

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models import DenseNet121_Weights, densenet121

        try:
            self.net = densenet121(weights=DenseNet121_Weights.IMAGENET1K_V1 if pretrained else None).features
        except Exception as exc:  # urllib/hub errors vary
            raise PneumoscopeError(f"cannot load DenseNet121 ImageNet weights ({exc.__class__.__name__}); "
                                   "set stage2.feature_extractor=seg-encoder to work offline") from exc

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x = (x01.expand(-1, 3, -1, -1) - _MEAN.to(x01.device)) / _STD.to(x01.device)
        return F.adaptive_avg_pool2d(F.relu(self.net(x)), 1).flatten(1)


class EncoderPhi(nn.Module):
    """The trained U-Net encoder's deepest features of a one-channel image in [0, 1]."""

    name = "seg-encoder"

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.encoder = unet.encoder

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        mean = x01.mean(dim=(1, 2, 3), keepdim=True)
        std = x01.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        feats = self.encoder((x01 - mean) / std)  # the stage-1 input convention (Tn)
        return F.adaptive_avg_pool2d(feats[-1], 1).flatten(1)


def build_extractor(name: str, unet: nn.Module) -> tuple[nn.Module, str]:
    """The extractor for ``name`` and a sentence saying which one is used and why."""
    if name not in EXTRACTORS:
        raise PneumoscopeError(f"unknown stage2.feature_extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    if name == "densenet121" or (name == "auto" and densenet_available()):
        return DenseNetPhi().eval(), "DenseNet121 with ImageNet weights"
    why = "configured" if name == "seg-encoder" else "DenseNet121 ImageNet weights unavailable (offline)"
    return EncoderPhi(unet).eval(), f"the trained stage-1 encoder ({why})"
