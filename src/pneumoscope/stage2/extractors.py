"""Feature extractors phi of the paper's Eq. 16: Phi(I, M) = [phi(I); phi(M)].

- ``densenet121``: torchvision's DenseNet121 with ImageNet weights, globally average-pooled,
  1024 values. The weights come from ``stage2.densenet_weights`` (a local file, verified: the way
  for a site without internet), else the torch hub cache, else a download when a network is there.
- ``seg-encoder``: the trained stage-1 U-Net encoder, deepest feature map average-pooled;
  needs no download.
- ``auto``: DenseNet121 when its weights can be had, else the stage-1 encoder.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import PneumoscopeError
from ..network import host_reachable
from ..weights_file import keys_line, read_weights

EXTRACTORS = ("auto", "densenet121", "seg-encoder")
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _densenet_weights_file() -> Path:
    from torchvision.models import DenseNet121_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(DenseNet121_Weights.IMAGENET1K_V1.url).name


def densenet_available(weights: str | None = None) -> bool:
    """True when DenseNet121 ImageNet weights are given, cached or downloadable."""
    return weights is not None or _densenet_weights_file().is_file() or host_reachable("download.pytorch.org")


# torchvision's own renaming of its DenseNet files' old names ("norm.1" -> "norm1"), from densenet._load_state_dict
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class DenseNetPhi(nn.Module):
    """DenseNet121 (ImageNet) features of a one-channel image in [0, 1]: (N, 1024).

    ``weights``: a local state dict of DenseNet121 (the whole model's, as torchvision saves it, or
    its ``features`` part); None takes torchvision's ImageNet weights from the hub cache or the
    network. ``expect_sha256``: the file must be this one (what a saved classifier was fitted with).
    ``record`` says which file was used ({"path", "sha256", ...}; empty for torchvision's own)."""

    name = "densenet121"

    def __init__(self, pretrained: bool = True, weights: str | None = None, expect_sha256: str | None = None) -> None:
        super().__init__()
        from torchvision.models import DenseNet121_Weights, densenet121

        self.record: dict = {}
        if weights is not None:
            self.net = densenet121(weights=None).features
            self._load_file(weights, expect_sha256)
            return
        try:
            self.net = densenet121(weights=DenseNet121_Weights.IMAGENET1K_V1 if pretrained else None).features
        except Exception as exc:  # urllib/hub errors vary
            raise PneumoscopeError(f"cannot load DenseNet121 ImageNet weights ({exc.__class__.__name__}); set "
                                   "stage2.densenet_weights to a local file (densenet121-a639ec97.pth), or "
                                   "stage2.feature_extractor=seg-encoder to work offline") from exc

    def _load_file(self, weights: str, expect_sha256: str | None) -> None:
        wf = read_weights(weights, "stage2.densenet_weights")
        if expect_sha256 is not None and wf.sha256 != expect_sha256:
            raise PneumoscopeError(f"stage2.densenet_weights: {wf.path} (sha256 {wf.sha256[:12]}...) is not the file this "
                                   f"classifier was fitted with (sha256 {expect_sha256[:12]}...): its features would differ")
        state = {}
        for key, value in wf.state.items():
            m = _OLD_DENSENET_KEY.match(key)
            key = m.group(1) + m.group(2) if m else key
            state[key.removeprefix("features.")] = value
        own = self.net.state_dict()
        missing = [k for k in own if k not in state or state[k].shape != own[k].shape]
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing:
            raise PneumoscopeError(f"stage2.densenet_weights: {wf.path}: not DenseNet121 weights ({len(own) - len(missing)} "
                                   f"of {len(own)} tensors fit; missing or of another shape: {keys_line(missing)})")
        self.net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        self.record = wf.record(len(own) - len(missing), len(own), missing)

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


def build_extractor(name: str, unet: nn.Module, densenet_weights: str | None = None,
                    expect_sha256: str | None = None) -> tuple[nn.Module, str]:
    """The extractor for ``name`` and a sentence saying which one is used and why (``densenet_weights``,
    ``expect_sha256``: see :class:`DenseNetPhi`)."""
    if name not in EXTRACTORS:
        raise PneumoscopeError(f"unknown stage2.feature_extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    if name == "densenet121" or (name == "auto" and densenet_available(densenet_weights)):
        phi = DenseNetPhi(weights=densenet_weights, expect_sha256=expect_sha256).eval()
        source = f" (local file {densenet_weights}, sha256 {phi.record['sha256'][:12]}...)" if phi.record else ""
        return phi, f"DenseNet121 with ImageNet weights{source}"
    why = "configured" if name == "seg-encoder" else "DenseNet121 ImageNet weights unavailable (offline)"
    return EncoderPhi(unet).eval(), f"the trained stage-1 encoder ({why})"
