"""Learning-rate schedules by hand: warm-up, cosine, one-cycle, plateau, and resuming them."""

import math

import pytest
import torch

from pneumoscope import config
from pneumoscope.stage1.schedule import LRSchedule

# the paper's schedule as the base each test changes (the demo itself warms up and decays by cosine)
PLATEAU = ["train.schedule=plateau", "train.warmup_epochs=0"]


def _run(sets, steps_per_epoch=10, epochs=4, val_losses=None):
    tc = config.load("demo", [f"train.epochs={epochs}", "train.lr=1e-3", *PLATEAU, *sets]).train
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=tc.lr)
    sched = LRSchedule(opt, tc, steps_per_epoch)
    lrs = []
    for e in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            sched.step()
        sched.epoch_end((val_losses or [1.0] * epochs)[e])
    return lrs, sched, opt


def test_warmup_is_linear_then_constant():
    lrs, _, _ = _run(["train.warmup_epochs=1"])
    assert lrs[:10] == pytest.approx([1e-3 * (k + 1) / 10 for k in range(10)])
    assert lrs[10:20] == pytest.approx([1e-3] * 10)


def test_cosine_reaches_the_floor_at_the_end():
    lrs, _, _ = _run(["train.schedule=cosine", "train.min_lr_ratio=0.1"])
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_onecycle_rises_then_falls():
    lrs, _, _ = _run(["train.schedule=onecycle", "train.min_lr_ratio=0.05"])
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1e-3) and 0 < peak < len(lrs) - 1
    assert lrs[0] < 2e-4 and lrs[-1] < 1e-4


def test_plateau_halves_after_patience_and_survives_a_resume():
    sets = ["train.plateau_patience=0"]
    lrs, sched, opt = _run(sets, val_losses=[1.0, 1.0, 0.5, 0.9])  # stalls at epochs 2 and 4
    assert lrs[19] == pytest.approx(1e-3) and lrs[20] == pytest.approx(5e-4)  # halved after the 2nd epoch stalled
    assert lrs[30] == pytest.approx(5e-4) and opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    tc = config.load("demo", ["train.epochs=4", "train.lr=1e-3", *PLATEAU, *sets]).train
    p = torch.nn.Parameter(torch.zeros(1))
    opt2 = torch.optim.Adam([p], lr=1e-3)
    again = LRSchedule(opt2, tc, 10)
    again.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(2.5e-4)
