"""Typed run configuration: frozen dataclasses, YAML in and out, ``--set a.b=c`` overrides.

Unknown keys fail loudly. The resolved config is saved in each run folder, and it
is what ``evaluate-seg`` and ``predict`` rebuild the model from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import PneumoscopeError, one_line

CONFIG_DIR = Path(__file__).parent / "configs"
SCHEDULES = ("plateau", "cosine", "onecycle")
LOSS_PRESETS = {"paper": (1.0, 1.0, 1.0), "siim-1st": (3.0, 1.0, 4.0), "balanced": (2.0, 1.0, 2.0)}  # (bce, dice, focal)


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are prepared."""

    path: str | None = None  # dataset folder; None = generate the synthetic default
    extra_paths: tuple[str, ...] = ()  # more dataset folders trained on together (e.g. labelled normals as negatives)
    layout: str = "auto"  # auto | kaggle | siim | folder
    size: int = 128  # training resolution (square); the paper uses 512
    cache_dir: str | None = None  # None = ~/.cache/pneumoscope (or $PNEUMOSCOPE_CACHE)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    folds: int = 0  # >= 2: cross-validation, one model per fold, predicting as their ensemble (0: one train/val/test split)
    augment: bool = True  # small shift/scale/rotate + brightness/contrast
    hflip: bool = False  # horizontal flip (off by default: anatomy is not symmetric)
    positive_fraction: float | None = None  # share of positive images sampled per epoch (None: the data's own)
    positive_fraction_end: float | None = None  # with positive_fraction: falls linearly to this share by the last epoch
    positive_floor: float | None = None  # without positive_fraction: when positives are rarer than this share, sample them at it
    skip_bad: bool = False  # skip unreadable items and list them instead of failing
    synth_n: int = 800  # synthetic default: number of phantoms
    synth_size: int = 256  # synthetic default: phantom resolution
    synth_positive_rate: float = 0.5
    synth_seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """The U-Net and its encoder."""

    encoder: str = "resnet18"
    encoder_weights: str | None = None  # None | "imagenet" | path to a local state dict
    cls_head: bool = False  # image-level classification head on the encoder
    init_from: str | None = None  # a run folder whose best weights start this training (e.g. at a larger size)
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)  # U-Net decoder widths, deepest first (5 blocks)
    members: int = 1  # U-Nets averaged (a cross-validated run's fold ensemble; set by training, not by hand)


@dataclass(frozen=True)
class LossConfig:
    """Composite loss alpha*BCE + beta*Dice + gamma*Focal (+ lambda*BCE of the head)."""

    preset: str | None = None  # named (bce, dice, focal) weights: paper 1/1/1, siim-1st 3/1/4, balanced 2/1/2
    bce: float = 1.0  # alpha
    dice: float = 1.0  # beta
    focal: float = 1.0  # gamma (the weight, not the focusing parameter)
    focal_gamma: float = 2.0  # focusing parameter of the focal term
    focal_alpha: float | None = 0.25  # alpha_t class balance of the focal term (None = off)
    dice_smooth: float = 1e-5  # epsilon of the paper's Eq. 14
    cls_weight: float = 0.0  # lambda of Eq. 1; > 0 needs model.cls_head


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation protocol (defaults: the paper's, but fewer epochs)."""

    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "plateau"  # plateau (the paper's ReduceLROnPlateau) | cosine | onecycle (per step)
    warmup_epochs: float = 0.0  # linear learning-rate warm-up over this many epochs (per step)
    min_lr_ratio: float = 0.01  # cosine / onecycle: the final learning rate as a share of lr
    grad_clip: float | None = None  # clip the gradient norm to this value
    ema_decay: float | None = None  # exponential moving average of the weights (evaluated and saved instead)
    average_best: int = 0  # >= 2: average the best k epochs' weights at the end (BatchNorm recomputed)
    freeze_encoder_epochs: int = 0  # keep the encoder fixed for the first epochs (e.g. continuing at a new size)
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    early_stopping_patience: int = 5
    min_epochs: int = 0  # no stop, and no best checkpoint, before this many epochs (a few validation images are noisy)
    seed: int = 42
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA only; CPU stays float32
    channels_last: bool = True  # NHWC layout: faster convolutions on CUDA and on CPU (oneDNN)
    num_workers: int = 0
    threshold: float = 0.5  # probability threshold for masks and metrics
    rule_objective: str = "dice_kaggle"  # what the post-processing rule search maximises on val: dice_kaggle | balanced | guarded
    progress: bool = True


@dataclass(frozen=True)
class Stage2Config:
    """Features, XGBoost classifier and its tuning."""

    data: str | None = None  # classification dataset; None = the stage-1 dataset's val (fit) and test (evaluate)
    layout: str = "auto"
    test_fraction: float = 0.4  # held out of ``data`` for evaluation (when ``data`` is set)
    feature_extractor: str = "auto"  # auto | densenet121 | seg-encoder
    densenet_weights: str | None = None  # a local DenseNet121 state dict (e.g. torchvision's densenet121-a639ec97.pth)
    n_iter: int = 30  # random-search candidates
    cv_folds: int = 5
    scoring: str = "average_precision"  # any scikit-learn scorer name
    threshold_rule: str = "max_f1"  # max_f1 | sensitivity
    target_sensitivity: float = 0.9  # for threshold_rule: sensitivity
    calibration: str = "none"  # none | isotonic | sigmoid
    batch_size: int = 16
    seed: int = 0


@dataclass(frozen=True)
class InferenceConfig:
    """How reduced precision is judged before prediction uses it (see inference/precision.py)."""

    max_metric_drop: float = 0.005  # bf16/int8 kept only when dice_kaggle and dice_pos drop at most this on validation
    max_validation_images: int = 256  # the validation images it is judged on (the first ones of the split)
    calibration_images: int = 64  # training images that calibrate int8


@dataclass(frozen=True)
class Config:
    """A whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    encoders: tuple[str, ...] = ("resnet34", "vgg16", "inceptionresnetv2", "xception")  # for `run`


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise PneumoscopeError(f"config section {where or 'root'} must be a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise PneumoscopeError(f"unknown config key {where}{sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, f"{where}{name}.")
        elif getattr(hint, "__origin__", None) is tuple:  # encoders, extra_paths, decoder_channels: a list
            kwargs[name] = _coerce_tuple(hint, value, f"{where}{name}")
        else:
            kwargs[name] = _coerce(hint, value, f"{where}{name}")
    return cls(**kwargs)


def _coerce_tuple(hint: Any, value: Any, key: str) -> tuple:
    """A list (YAML), one string, or a comma-separated string (``--set``) as a tuple of the field's type."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.strip("()[] ").split(",") if "," in value else [value]
    kind = hint.__args__[0]
    return tuple(_coerce(kind, v.strip() if isinstance(v, str) else v, key) for v in value)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check and convert a scalar to its field type (YAML and --set give strings or numbers)."""
    args = getattr(hint, "__args__", ())
    optional = type(None) in args
    if optional and isinstance(value, str) and value.lower() in ("null", "none"):
        return None
    if value is None:
        if optional:
            return None
        raise PneumoscopeError(f"config key {key} cannot be null")
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise PneumoscopeError(f"config key {key}: cannot read {value!r} as {base.__name__}") from exc


# key -> (test, what it must be); checked on every config, so a bad value fails before any work.
_RULES: dict[str, tuple[Any, str]] = {
    "data.size": (lambda v: v >= 32 and v % 32 == 0, "a multiple of 32, at least 32 (the U-Net halves it 5 times)"),
    "data.val_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.test_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.positive_fraction": (lambda v: v is None or 0 < v < 1, "null or in (0, 1)"),
    "data.positive_fraction_end": (lambda v: v is None or 0 < v < 1, "null or in (0, 1)"),
    "data.positive_floor": (lambda v: v is None or 0 < v < 1, "null or in (0, 1)"),
    "loss.preset": (lambda v: v is None or v in LOSS_PRESETS, f"null or one of {', '.join(LOSS_PRESETS)}"),
    "train.schedule": (lambda v: v in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
    "train.warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "train.min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "train.grad_clip": (lambda v: v is None or v > 0, "null or > 0"),
    "train.ema_decay": (lambda v: v is None or 0 < v < 1, "null or in (0, 1)"),
    "train.average_best": (lambda v: v == 0 or v >= 2, "0 (off) or at least 2"),
    "train.freeze_encoder_epochs": (lambda v: v >= 0, ">= 0"),
    "model.decoder_channels": (lambda v: len(v) == 5 and all(c >= 1 for c in v), "5 positive widths, e.g. 128,64,32,16,16"),
    "data.synth_n": (lambda v: v >= 8, ">= 8"),
    "data.synth_size": (lambda v: v >= 32, ">= 32"),
    "data.synth_positive_rate": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "loss.bce": (lambda v: v >= 0, ">= 0"),
    "loss.dice": (lambda v: v >= 0, ">= 0"),
    "loss.focal": (lambda v: v >= 0, ">= 0"),
    "loss.focal_gamma": (lambda v: v >= 0, ">= 0"),
    "loss.focal_alpha": (lambda v: v is None or 0 < v < 1, "null or in (0, 1)"),
    "loss.dice_smooth": (lambda v: v >= 0, ">= 0"),
    "loss.cls_weight": (lambda v: v >= 0, ">= 0"),
    "data.folds": (lambda v: v == 0 or v >= 2, "0 (one split) or >= 2"),
    "model.members": (lambda v: v >= 1, ">= 1"),
    "train.epochs": (lambda v: v >= 1, ">= 1"),
    "train.batch_size": (lambda v: v >= 1, ">= 1"),
    "train.lr": (lambda v: v >= 0, ">= 0"),
    "train.weight_decay": (lambda v: v >= 0, ">= 0"),
    "train.plateau_factor": (lambda v: 0 < v < 1, "in (0, 1)"),
    "train.plateau_patience": (lambda v: v >= 0, ">= 0"),
    "train.early_stopping_patience": (lambda v: v >= 1, ">= 1"),
    "train.min_epochs": (lambda v: v >= 0, ">= 0"),
    "train.num_workers": (lambda v: v >= 0, ">= 0"),
    "train.threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "train.rule_objective": (lambda v: v in ("dice_kaggle", "balanced", "guarded"), "dice_kaggle, balanced or guarded"),
    "stage2.test_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "stage2.n_iter": (lambda v: v >= 1, ">= 1"),
    "inference.max_metric_drop": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "inference.max_validation_images": (lambda v: v >= 1, ">= 1"),
    "inference.calibration_images": (lambda v: v >= 1, ">= 1"),
    "stage2.cv_folds": (lambda v: v >= 2, ">= 2"),
    "stage2.target_sensitivity": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "stage2.batch_size": (lambda v: v >= 1, ">= 1"),
}


def loss_weights(cfg: LossConfig) -> tuple[float, float, float]:
    """(BCE, Dice, Focal) weights: the preset's when one is named, else the three keys."""
    return LOSS_PRESETS[cfg.preset] if cfg.preset else (cfg.bce, cfg.dice, cfg.focal)


def _not_finite(cfg: Config) -> tuple[str, Any] | None:
    """The first numeric key (or list item) holding NaN or infinity: (key, value); None when there is none."""
    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(part):
            continue
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{section.name}.{f.name}", value
    return None


def check(cfg: Config) -> Config:
    """Raise PneumoscopeError naming the first value out of its range (and impossible combinations)."""
    bad = _not_finite(cfg)
    if bad is not None:  # before any range: inf passes ">= 0", and every comparison with NaN fails quietly
        raise PneumoscopeError(f"config key {bad[0]}: {bad[1]!r} is not allowed; it must be a finite number")
    for key, (ok, what) in _RULES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise PneumoscopeError(f"config key {key}: {value!r} is not allowed; it must be {what}")
    d, lo = cfg.data, cfg.loss
    if d.val_fraction + d.test_fraction >= 1:
        raise PneumoscopeError(f"data.val_fraction + data.test_fraction = {d.val_fraction + d.test_fraction:g}; "
                               "they must sum to less than 1 (the rest is for training)")
    if d.positive_fraction_end is not None and d.positive_fraction is None:
        raise PneumoscopeError("data.positive_fraction_end needs data.positive_fraction (the share it starts from)")
    if sum(loss_weights(lo)) == 0:
        raise PneumoscopeError("loss.bce, loss.dice and loss.focal are all 0: nothing to train on")
    if lo.cls_weight > 0 and not cfg.model.cls_head:
        raise PneumoscopeError("loss.cls_weight > 0 needs model.cls_head: true")
    if not cfg.encoders:
        raise PneumoscopeError("encoders: the list is empty; name at least one encoder")
    return cfg


def from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from a nested mapping, rejecting unknown keys and values out of range."""
    return check(_build(Config, values or {}, ""))


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested mapping (YAML-friendly)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value

    return plain(dataclasses.asdict(cfg))


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` strings to a nested mapping; the value is parsed as YAML."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for item in overrides:
        if "=" not in item:
            raise PneumoscopeError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PneumoscopeError(f"--set {key}: {part} is not a section")
        value = parse_yaml(raw, f"--set {key}") if raw.strip() else None
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = {**node[parts[-1]], **value}  # a section's keys are merged: train={} resets nothing
        else:
            node[parts[-1]] = value
    return out


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (a second ``train:`` block silently replaced
    the first) and aliases (``*name``: a few hundred bytes of nested aliases expand to gigabytes;
    a config has no need of them)."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"alias *{event.anchor} at line {event.start_mark.line + 1}: aliases are not allowed "
                                 "in config files; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.YAMLError(f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text parsed by the strict loader; one line naming ``where`` when it is refused."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PneumoscopeError(f"{where}: invalid YAML ({one_line(exc)})") from exc


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or a bundled config name such as ``demo`` or ``paper``."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{Path(str(name)).stem}.yaml"
    if bundled.is_file():
        return bundled
    raise PneumoscopeError(f"config file {name} not found (bundled: {', '.join(p.stem for p in sorted(CONFIG_DIR.glob('*.yaml')))})")


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults), then apply ``--set`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        p = resolve_config_path(path)
        values = parse_yaml(p.read_text(), str(p)) or {}
        if not isinstance(values, dict):
            raise PneumoscopeError(f"{p}: a config file is a mapping of sections (data:, model:, loss:, train:, ...), "
                                   f"not a {type(values).__name__}")
    return from_dict(apply_overrides(values, overrides or []))


def dump(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
