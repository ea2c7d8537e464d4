"""Weight averaging: an exponential moving average during training, and the average of the best
k epochs at the end (SWA-style), each with its BatchNorm statistics handled properly."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn


class EMA:
    """Exponential moving average of a model's parameters.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the early,
    random weights fade quickly; BatchNorm buffers are copied from the live model (an average of
    running statistics would describe no real set of weights)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """After each optimizer step."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        """For the resume checkpoint."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Continue where a checkpoint left off."""
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


class BestK:
    """The weights of the k best epochs by validation loss (copies on the CPU)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.items: list[tuple[float, int, dict]] = []  # (val_loss, epoch, state_dict)

    def offer(self, val_loss: float, epoch: int, model: nn.Module) -> None:
        """Keep this epoch's weights if they are among the k best."""
        if len(self.items) < self.k or val_loss < self.items[-1][0]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.items = sorted([*self.items, (val_loss, epoch, state)], key=lambda t: t[0])[: self.k]

    def average_into(self, model: nn.Module) -> list[int]:
        """Load the mean of the kept weights into ``model`` (floating tensors averaged, others from
        the best epoch); returns the epochs averaged. Recompute BatchNorm statistics afterwards."""
        states = [s for _, _, s in self.items]
        mean = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
                for k, v in states[0].items()}
        model.load_state_dict(mean)
        return [e for _, e, _ in self.items]

    def state_dict(self) -> dict:
        """For the resume checkpoint."""
        return {"k": self.k, "losses": [t[0] for t in self.items], "epochs": [t[1] for t in self.items],
                "states": [t[2] for t in self.items]}

    def load_state_dict(self, state: dict) -> None:
        """Continue where a checkpoint left off."""
        self.items = list(zip(state["losses"], state["epochs"], state["states"]))


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, images: Iterable[torch.Tensor], device: torch.device) -> None:
    """BatchNorm running statistics of ``model`` recomputed as the plain mean over ``images`` (batches)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for x in images:
        model(x.to(device))
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
