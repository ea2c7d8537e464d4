"""The run folder contract: where things are and how to read them back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from . import config as config_mod
from .config import Config
from .errors import BadItemError, PneumoscopeError


def read_config(run: str | Path) -> Config:
    """The resolved config saved in a run folder."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise PneumoscopeError(f"{run}: not a run folder (no config.yaml)")
    return config_mod.load(path)


def checkpoint_path(run: str | Path, which: str = "best") -> Path:
    """``best.pt`` or ``last.pt`` of a run, checked to exist."""
    path = Path(run) / f"{which}.pt"
    if not path.is_file():
        raise PneumoscopeError(f"{run}: no {which}.pt checkpoint (was training finished?)")
    return path


def load_model(run: str | Path, device: torch.device, which: str = "best") -> tuple[torch.nn.Module, Config]:
    """Rebuild the U-Net of a run from its checkpoint (no download: weights come from the file)."""
    from .models import build_model

    ck = torch.load(checkpoint_path(run, which), map_location="cpu", weights_only=False)
    cfg = config_mod.from_dict(ck["config"])
    arch = config_mod.from_dict({**ck["config"], "model": {**ck["config"]["model"], "encoder_weights": None}})
    model = build_model(arch.model)
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), cfg


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> None:
    """JSON with NaN written as null (strict JSON)."""
    Path(path).write_text(json.dumps(_clean(data), indent=2) + "\n")


def write_skipped(run: str | Path, skipped: list[BadItemError]) -> None:
    """List skipped items (``--skip-bad``) in ``skipped.csv``; nothing is dropped silently."""
    path = Path(run) / "skipped.csv"
    if not skipped:
        path.unlink(missing_ok=True)
        return
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "reason"])
        for e in skipped:
            w.writerow([e.item_id, e.path, e.reason])
