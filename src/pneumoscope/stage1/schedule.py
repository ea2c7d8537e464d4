"""The learning rate over training: the paper's ReduceLROnPlateau, or a per-step cosine / one-cycle
schedule, each with an optional linear warm-up. One object, saved with the resume checkpoint."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig


class LRSchedule:
    """Sets the optimizer's learning rate each step (warm-up, cosine, one-cycle) and each epoch (plateau)."""

    def __init__(self, optim: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int) -> None:
        self.optim, self.tc = optim, tc
        self.total = max(1, tc.epochs * steps_per_epoch)
        self.warmup = int(round(tc.warmup_epochs * steps_per_epoch))
        self.step_count = 0
        self.scale = 1.0  # what the plateau rule has multiplied the learning rate by so far
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optim, mode="min", factor=tc.plateau_factor,
                                                                  patience=tc.plateau_patience)
        self._apply()

    def _factor(self) -> float:
        s, tc = self.step_count, self.tc
        warm = min(1.0, (s + 1) / self.warmup) if self.warmup else 1.0
        if tc.schedule == "plateau":
            return warm * self.scale
        if tc.schedule == "cosine":
            t = min(1.0, max(0, s - self.warmup) / max(1, self.total - self.warmup))
            return warm * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
        # onecycle: up over the warm-up (or 30 % of training), then cosine down
        rise = self.warmup or int(0.3 * self.total)
        if s < rise:
            return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * (s + 1) / rise
        t = (s - rise) / max(1, self.total - rise)
        return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    def _apply(self) -> None:
        for group in self.optim.param_groups:
            group["lr"] = self.tc.lr * self._factor()

    def step(self) -> None:
        """After each optimizer step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, val_loss: float) -> None:
        """After each validation: the plateau rule halves the learning rate when the loss stalls."""
        if self.tc.schedule != "plateau":
            return
        before = self.optim.param_groups[0]["lr"]
        self.plateau.step(val_loss)
        after = self.optim.param_groups[0]["lr"]
        if after < before:
            self.scale *= after / before
        self._apply()

    def state_dict(self) -> dict:
        """For the resume checkpoint."""
        return {"step_count": self.step_count, "scale": self.scale, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue where a checkpoint left off."""
        self.step_count, self.scale = int(state["step_count"]), float(state["scale"])
        self.plateau.load_state_dict(state["plateau"])
        self._apply()
