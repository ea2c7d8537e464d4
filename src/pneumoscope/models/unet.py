"""U-Net with a named encoder (segmentation-models-pytorch), one input channel.

The paper's encoders are ``resnet34``, ``vgg16``, ``inceptionresnetv2`` and
``xception``; ``resnet18``, ``efficientnet-b0`` and ``mobilenet_v2`` are light ones
for CPUs. Encoder weights: None (random), ``imagenet`` (downloaded by smp; needs a
network or a filled cache), or a path to a local state dict.
"""

from __future__ import annotations

import logging
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from ..config import ModelConfig
from ..errors import PneumoscopeError
from ..network import host_reachable

# canonical name -> (smp encoder name, role)
ENCODERS: dict[str, tuple[str, str]] = {
    "resnet34": ("resnet34", "paper"),
    "vgg16": ("vgg16", "paper"),
    "inceptionresnetv2": ("inceptionresnetv2", "paper"),
    "xception": ("xception", "paper"),
    "resnet18": ("resnet18", "light"),
    "efficientnet-b0": ("efficientnet-b0", "light"),
    "mobilenet_v2": ("mobilenet_v2", "light"),
}
_ALIASES = {"inception_resnet_v2": "inceptionresnetv2", "inceptionresnet": "inceptionresnetv2",
            "efficientnet_b0": "efficientnet-b0", "mobilenetv2": "mobilenet_v2", "mobilenet-v2": "mobilenet_v2"}

WEIGHTS_HOST = "huggingface.co"


def canonical_encoder(name: str) -> str:
    """Normalise an encoder name (case, aliases) or raise PneumoscopeError listing the choices."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ENCODERS:
        raise PneumoscopeError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return key


def _online(host: str = WEIGHTS_HOST) -> bool:
    return host_reachable(host)


def _load_local_weights(model: smp.Unet, path: Path) -> None:
    """Load a local state dict into the whole model or into its encoder (3-channel stems summed)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PneumoscopeError(f"{path}: cannot read encoder weights ({exc})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    target: nn.Module = model
    if not any(k.startswith("encoder.") for k in state):
        target = model.encoder
    own = target.state_dict()
    fixed = {}
    for k, v in state.items():
        if k in own and own[k].shape != v.shape and v.ndim == 4 and v.shape[1] == 3 and own[k].shape[1] == 1:
            v = v.sum(dim=1, keepdim=True)  # RGB stem -> greyscale stem
        if k in own and own[k].shape == v.shape:
            fixed[k] = v
    if len(fixed) < 0.5 * len(own):
        raise PneumoscopeError(f"{path}: weights do not fit this encoder ({len(fixed)} of {len(own)} tensors match)")
    target.load_state_dict(fixed, strict=False)


def build_model(cfg: ModelConfig) -> smp.Unet:
    """Build the U-Net of ``cfg`` (one input channel, one output logit map, optional head)."""
    name = canonical_encoder(cfg.encoder)
    smp_name = ENCODERS[name][0]
    weights = cfg.encoder_weights
    aux = {"classes": 1, "dropout": 0.2} if cfg.cls_head else None
    local = None
    if weights not in (None, "imagenet"):
        local = Path(weights)
        if not local.is_file():
            raise PneumoscopeError(f"encoder_weights: {weights} is neither null, imagenet nor an existing file")
        weights = None
    if weights == "imagenet" and not _online():
        raise PneumoscopeError(
            f"cannot download ImageNet weights for {name}: no network; "
            "set model.encoder_weights to a local weights file, or to null to train from scratch")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        model = smp.Unet(smp_name, encoder_weights=weights, in_channels=1, classes=1, aux_params=aux)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PneumoscopeError(f"cannot build U-Net with encoder {name} (weights {weights}): {exc}") from exc
    if local is not None:
        _load_local_weights(model, local)
    _freeze_unused(model)
    return model


def _freeze_unused(model: nn.Module) -> None:
    """Stop training parameters the forward pass never reaches (e.g. an encoder's classifier
    stem), so DDP needs no unused-parameter search and optimisers skip dead weights."""
    was_training = model.training
    model.eval()  # no BatchNorm statistics change during the probe
    out = model(torch.zeros(1, 1, 64, 64))
    total = sum(o.float().sum() for o in (out if isinstance(out, (tuple, list)) else (out,)))
    total.backward()
    for p in model.parameters():
        if p.grad is None:
            p.requires_grad_(False)
        p.grad = None
    model.train(was_training)
