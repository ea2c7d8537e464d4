"""U-Net with a named encoder (segmentation-models-pytorch), one input channel.

The paper's encoders are ``resnet34``, ``vgg16``, ``inceptionresnetv2`` and
``xception``; ``resnet18``, ``efficientnet-b0`` and ``mobilenet_v2`` are light ones
for CPUs. Encoder weights: None (random), ``imagenet`` (downloaded by smp; needs a
network or a filled cache), or a path to a local state dict.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from .. import config as config_mod
from ..config import Config, ModelConfig
from ..errors import PneumoscopeError
from ..folders import Run
from ..network import host_reachable
from ..weights_file import keys_line, read_weights

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


def _load_local_weights(model: smp.Unet, encoder_name: str, path: Path) -> smp.Unet:
    """Load a local state dict: a whole one-channel U-Net (keys ``encoder.``/``decoder.``), or an
    encoder alone. An encoder saved with a three-channel (RGB) stem is loaded into a
    three-channel encoder that smp then adapts to one channel itself (``set_in_channels``,
    which sums the stem's RGB weights, as smp does for its own pretrained weights).

    The file is verified (:func:`..weights_file.read_weights`); what was loaded, the file's SHA-256
    and the names of the tensors that did not load are kept as ``model.initial_weights`` (the run
    records them), and said in one line when some did not load."""
    wf = read_weights(path, "model.encoder_weights")
    state = wf.state
    whole = any(k.startswith("encoder.") for k in state)
    target: nn.Module = model if whole else model.encoder
    own = target.state_dict()
    rgb_stem = any(k in own and v.ndim == 4 and v.shape[1] == 3 and own[k].shape[1] == 1 for k, v in state.items())
    if rgb_stem and not whole:
        from segmentation_models_pytorch.encoders import get_encoder

        rgb = get_encoder(ENCODERS[canonical_encoder(encoder_name)][0], in_channels=3, weights=None)
        fit = _fitting(state, rgb.state_dict(), path)
        rgb.load_state_dict(fit, strict=False)
        missing = [k for k in rgb.state_dict() if k not in fit]
        expected = len(rgb.state_dict())
        rgb.set_in_channels(1, pretrained=True)  # smp sums the RGB stem into one channel itself
        state, target = rgb.state_dict(), model.encoder
    fit = _fitting(state, target.state_dict(), path)
    target.load_state_dict(fit, strict=False)
    if not (rgb_stem and not whole):
        missing, expected = [k for k in target.state_dict() if k not in fit], len(target.state_dict())
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # a counter, not a weight
    model.initial_weights = wf.record(expected - len(missing), expected, missing)
    if missing:
        print(f"{path}: {expected - len(missing)} of {expected} {'U-Net' if whole else 'encoder'} tensors loaded; "
              f"not loaded (left at their initial values): {keys_line(missing)}", flush=True)
    return model


def _fitting(state: dict, own: dict, path: Path | None = None) -> dict:
    """The tensors of ``state`` that fit ``own`` by name and shape (at least half of them must)."""
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fit) < 0.5 * len(own):
        unknown = [k for k in state if k not in own]
        raise PneumoscopeError(f"{path or 'weights'}: weights do not fit this encoder ({len(fit)} of {len(own)} tensors "
                               f"match; the file's own names: {keys_line(unknown or list(state))})")
    return fit


class _MeanEncoder(nn.Module):
    """The members' encoders as one: each level's feature maps averaged (what stage 2's
    ``seg-encoder`` features read from a fold ensemble)."""

    def __init__(self, encoders: list[nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = [enc(x) for enc in self.encoders]
        return [torch.stack(level).mean(0) for level in zip(*levels)]


def _logit_of_mean(logits: list[torch.Tensor]) -> torch.Tensor:
    p = torch.stack([torch.sigmoid(z) for z in logits]).mean(0).clamp(1e-7, 1 - 1e-7)
    return torch.log(p) - torch.log1p(-p)


class FoldEnsemble(nn.Module):
    """The K fold models of a cross-validated run as one network: its output is the logit of the mean of
    the members' probabilities (and of their head's, with a head), so that every caller of a U-Net
    (prediction, ONNX export, the precision judgement, stage 2) takes it as one model."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def encoder(self) -> nn.Module:
        """The members' encoders, each level averaged (not a registered module: no second copy of the weights)."""
        return _MeanEncoder([m.encoder for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        outs = [m(x) for m in self.members]
        if isinstance(outs[0], (tuple, list)):
            return _logit_of_mean([o[0] for o in outs]), _logit_of_mean([o[1] for o in outs])
        return _logit_of_mean(outs)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the U-Net of ``cfg`` (one input channel, one output logit map, optional head); with
    ``cfg.members`` > 1, a :class:`FoldEnsemble` of that many (what a cross-validated run predicts with)."""
    if cfg.members > 1:
        one = dataclasses.replace(cfg, members=1)
        return FoldEnsemble([build_model(one) for _ in range(cfg.members)])
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
        model = smp.Unet(smp_name, encoder_weights=weights, in_channels=1, classes=1, aux_params=aux,
                         decoder_channels=list(cfg.decoder_channels))
    except (OSError, ValueError, RuntimeError) as exc:
        raise PneumoscopeError(f"cannot build U-Net with encoder {name} (weights {weights}): {exc}") from exc
    if local is not None:
        _load_local_weights(model, name, local)
    _freeze_unused(model)
    return model


def load_model(run: Run, device: torch.device | None = None) -> tuple[nn.Module, Config]:
    """A run's U-Net with its best weights (eval mode, on ``device``) and the config it was trained with.

    Built once per run object and device; new weights in the run are read again."""
    device = device or torch.device("cpu")
    key = ("unet", str(device), run.weights_id())
    if key not in run.memo:
        state, cfg_dict = run.load_weights()
        cfg = config_mod.from_dict(cfg_dict)
        run.memo[key] = (model_from_state(cfg.model, state).to(device).eval(), cfg)
    return run.memo[key]


def model_from_state(cfg: ModelConfig, state: dict) -> nn.Module:
    """Rebuild a trained U-Net from its saved weights (no download: the weights are all there)."""
    model = build_model(dataclasses.replace(cfg, encoder_weights=None))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PneumoscopeError(f"saved weights do not fit a U-Net with encoder {cfg.encoder} "
                               f"({str(exc).splitlines()[0]})") from exc
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
