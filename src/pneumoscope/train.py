"""The stage-1 trainer: Adam, plateau LR, early stopping, checkpoints, resume, DDP.

Checkpoints: ``best.pt`` (lowest validation loss) and ``last.pt`` (end of every
epoch, with optimizer, scheduler, early-stopping state and RNG state), so that
``resume`` continues a killed run to the same result as an uninterrupted one.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import config as config_mod
from .config import Config
from .data.cache import Cache
from .data.dataset import EpochSampler, SegDataset
from .data.transforms import augmentation
from .distributed import DistInfo, all_reduce_sum, barrier, broadcast_flag
from .engine import autocast, evaluate, seed_everything, split_output, to_device
from .losses import CompositeLoss
from .metrics import SegMetrics
from .models import build_model

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "val_iou", "val_iou_pos", "val_dice_pos", "val_dice_kaggle",
                  "val_pixel_accuracy", "lr", "seconds"]


@dataclass
class TrainState:
    """What survives between epochs (and in ``last.pt``)."""

    epoch: int = 0  # epochs completed
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


def _loader(ds: SegDataset, sampler: EpochSampler, batch_size: int, workers: int, drop_last: bool) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: Config, state: TrainState, **extra) -> None:
    """Write a checkpoint atomically (model weights, config and training state)."""
    payload = {"model": model.state_dict(), "config": config_mod.to_dict(cfg), "state": state.__dict__, **extra}
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    return torch.load(path, map_location="cpu", weights_only=False)


def train_segmentation(cfg: Config, cache: Cache, split: np.ndarray, out: Path, info: DistInfo,
                       device: torch.device, resume: bool = False) -> TrainState:
    """Train a U-Net on the cache rows whose split is ``train``; validate on ``val``.

    ``split`` holds one of train/val/test per cache row. Only rank 0 writes files.
    """
    tc = cfg.train
    seed_everything(tc.seed, tc.deterministic)
    train_rows, val_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError("training needs at least one train and one val image")
    model = build_model(cfg.model).to(device)
    if tc.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = CompositeLoss(cfg.loss)
    optim = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optim, mode="min", factor=tc.plateau_factor,
                                                       patience=tc.plateau_patience)
    state = TrainState()
    last = out / "last.pt"
    if resume and last.is_file():
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        state = TrainState(**ck["state"])
        torch.set_rng_state(ck["rng"])
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if info.enabled else model
    train_ds = SegDataset(cache, train_rows, augmentation(cfg.data.hflip) if cfg.data.augment else None, tc.seed)
    val_ds = SegDataset(cache, val_rows[info.rank :: info.world])
    train_sampler = EpochSampler(train_ds.labels(), True, tc.seed, cfg.data.positive_fraction, info.rank, info.world)
    train_dl = _loader(train_ds, train_sampler, tc.batch_size, tc.num_workers, drop_last=len(train_rows) > tc.batch_size * info.world)
    val_dl = _loader(val_ds, EpochSampler(val_ds.labels(), False), tc.batch_size, tc.num_workers, drop_last=False)
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    while state.epoch < tc.epochs and state.bad_epochs < tc.early_stopping_patience:
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        train_sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        net.train()
        train_acc = SegMetrics()
        batches = train_dl
        if tc.progress and info.is_main and sys.stderr.isatty():
            from tqdm import tqdm
            batches = tqdm(train_dl, desc=f"{cfg.model.encoder} epoch {epoch}/{tc.epochs}", leave=False)
        for batch in batches:
            x, y, label = to_device(batch, device, tc.channels_last)
            with autocast(device, use_amp):
                logits, cls_logit = split_output(net(x))
            loss, _ = loss_fn(logits, y, cls_logit, label)
            optim.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
            train_acc.update(torch.sigmoid(logits.detach().float()) > tc.threshold, y, loss.item())
            if hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{float(loss):.4f}")
        train_acc.sums = all_reduce_sum(train_acc.sums, info)
        val_acc = evaluate(model, val_dl, loss_fn, device, tc.threshold, use_amp, tc.channels_last)
        val_acc.sums = all_reduce_sum(val_acc.sums, info)
        val = val_acc.compute()
        sched.step(val["loss"])
        improved = val["loss"] < state.best_val
        if improved:
            state.best_val, state.best_epoch, state.bad_epochs = val["loss"], epoch, 0
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        row = {"epoch": epoch, "train_loss": train_acc.compute()["loss"], "val_loss": val["loss"], "val_iou": val["iou"],
               "val_iou_pos": val["iou_pos"], "val_dice_pos": val["dice_pos"], "val_dice_kaggle": val["dice_kaggle"],
               "val_pixel_accuracy": val["pixel_accuracy"], "lr": optim.param_groups[0]["lr"],
               "seconds": round(time.perf_counter() - t0, 2)}
        state.history.append(row)
        if info.is_main:
            if improved:
                save_checkpoint(out / "best.pt", model, cfg, state)
            save_checkpoint(last, model, cfg, state, optimizer=optim.state_dict(), scheduler=sched.state_dict(),
                            rng=torch.get_rng_state())
            write_history(out / "history.csv", state.history)
            if tc.progress:
                print(f"[{cfg.model.encoder}] epoch {epoch}: train_loss {row['train_loss']:.4f} val_loss {val['loss']:.4f} "
                      f"val_dice_pos {val['dice_pos']:.4f} val_iou {val['iou']:.4f} lr {row['lr']:.2e} ({row['seconds']}s)",
                      flush=True)
        if broadcast_flag(state.bad_epochs >= tc.early_stopping_patience, info):
            break
    barrier(info)
    return state


def write_history(path: Path, rows: list[dict]) -> None:
    """history.csv: one row per epoch."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        w.writerows(rows)
