"""The stage-1 trainer: Adam, plateau LR, early stopping, checkpoints, resume, DDP.

Checkpoints: the best (lowest validation loss) and the last (end of every epoch, with
optimizer, scheduler, early-stopping state and RNG state), so that ``resume`` continues a
killed run to the same result as an uninterrupted one. The run folder stores them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import config as config_mod
from ..config import Config
from ..data.cache import Cache
from ..data.dataset import EpochSampler, SegDataset
from ..data.transforms import augmentation
from ..distributed import DistInfo, all_reduce_sum, barrier, broadcast_flag
from ..errors import PneumoscopeError
from ..folders import Run
from .averaging import EMA, BestK, recompute_batchnorm
from .engine import autocast, evaluate, seed_everything, split_output, to_device
from .losses import CompositeLoss
from .metrics import SegMetrics
from .schedule import LRSchedule
from .unet import build_model

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "val_iou", "val_iou_pos", "val_dice_pos", "val_dice_kaggle",
                  "val_pixel_accuracy", "val_pos_empty", "lr", "seconds"]
COLLAPSE_EPOCHS = 3  # this many epochs in a row with every validation positive predicted empty: a collapse


def collapse_line(encoder: str, epochs: int, where: str = "validation") -> str:
    """The one line that says a model has collapsed to empty masks."""
    return (f"[{encoder}] collapse: every {where} positive predicted empty for {epochs} epochs in a row (the model is "
            "learning to draw nothing; see docs/training.md: more positives per batch, data.positive_fraction, "
            "loss.focal_alpha)")


@dataclass
class TrainState:
    """What survives between epochs (and in the last checkpoint)."""

    epoch: int = 0  # epochs completed
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    averaged: dict = field(default_factory=dict)  # the best-k average, when one was made
    empty_epochs: int = 0  # consecutive epochs in which every validation positive was predicted empty
    collapsed: list = field(default_factory=list)  # the collapse lines said (once each), for the report
    initial_weights: dict = field(default_factory=dict)  # the local weights file it began from (weights_file.record)


def _loader(ds: SegDataset, sampler: EpochSampler, batch_size: int, workers: int, drop_last: bool) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)


def check_resumable(resume_state: dict, cfg: Config) -> None:
    """Refuse to resume a checkpoint into another architecture (one line naming the difference)."""
    saved = resume_state.get("config", {}).get("model", {})
    want = config_mod.to_dict(cfg)["model"]
    for key in ("encoder", "cls_head"):
        if saved.get(key) != want.get(key):
            raise PneumoscopeError(f"--resume: the checkpoint was trained with model.{key}={saved.get(key)}, not {want.get(key)}; "
                                   f"resume with the same {key}, or train into another --out")


def _positive_fraction(cfg: Config, epoch: int, own_share: float = 1.0) -> float | None:
    """This epoch's share of positive images: constant, or falling linearly from start to end; without
    either, ``data.positive_floor`` when the training images' own share (``own_share``) is below it."""
    d, n = cfg.data, cfg.train.epochs
    if d.positive_fraction is None:
        return d.positive_floor if d.positive_floor is not None and 0 < own_share < d.positive_floor else None
    if d.positive_fraction_end is None:
        return d.positive_fraction
    t = (epoch - 1) / max(1, n - 1)
    return d.positive_fraction + (d.positive_fraction_end - d.positive_fraction) * t


def _set_encoder_frozen(model: torch.nn.Module, frozen: bool, trainable: set[str]) -> None:
    """Freeze or release the encoder (only parameters that train at all: ``trainable`` names)."""
    for name, p in model.named_parameters():
        if name.startswith("encoder.") and name in trainable:
            p.requires_grad_(not frozen)


def train_segmentation(cfg: Config, cache: Cache, split: np.ndarray, split_table: pd.DataFrame, run: Run, info: DistInfo,
                       device: torch.device, resume_state: dict | None = None,
                       on_first_write: Callable[[], None] | None = None, init_state: dict | None = None) -> TrainState:
    """Train a U-Net on the cache rows whose split is ``train``; validate on ``val``.

    ``split`` holds one of train/val/test per cache row (``split_table`` is the saved form).
    ``resume_state``: a resume checkpoint to continue from; ``init_state``: weights to start from
    (``model.init_from``). Only rank 0 writes files, and not before the first epoch's weights exist:
    ``on_first_write`` runs just before the first file of this training is written (the caller
    saves the config and split then). With ``train.ema_decay`` the moving average is what is
    validated and saved; with ``train.average_best`` the average of the best epochs replaces the
    best weights at the end when it validates better.
    """
    tc = cfg.train
    seed_everything(tc.seed, tc.deterministic)
    train_rows, val_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise PneumoscopeError("training needs at least one train and one val image; check data.val_fraction and the dataset size")
    model = build_model(cfg.model).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    loss_fn = CompositeLoss(cfg.loss)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tc.lr, weight_decay=tc.weight_decay)
    train_ds = SegDataset(cache, train_rows, augmentation(cfg.data.hflip) if cfg.data.augment else None, tc.seed)
    val_ds = SegDataset(cache, val_rows[info.rank :: info.world])
    own_share = float((train_ds.labels() > 0).mean())
    train_sampler = EpochSampler(train_ds.labels(), True, tc.seed, _positive_fraction(cfg, 1, own_share), info.rank, info.world)
    drop_last = len(train_rows) > tc.batch_size * info.world
    train_dl = _loader(train_ds, train_sampler, tc.batch_size, tc.num_workers, drop_last=drop_last)
    val_dl = _loader(val_ds, EpochSampler(val_ds.labels(), False), tc.batch_size, tc.num_workers, drop_last=False)
    sched = LRSchedule(optim, tc, len(train_dl))
    ema = EMA(model, tc.ema_decay) if tc.ema_decay else None
    best_k = BestK(tc.average_best) if tc.average_best else None
    state = TrainState()
    if resume_state is not None:
        ck = resume_state
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        state = TrainState(**ck["state"])
        torch.set_rng_state(ck["rng"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        if best_k is not None and "best_k" in ck:
            best_k.load_state_dict(ck["best_k"])
    if not state.initial_weights:
        state.initial_weights = getattr(model, "initial_weights", {})
    net = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=tc.freeze_encoder_epochs > 0)
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    judged = ema.model if ema is not None else model  # what is validated and saved
    while state.epoch < tc.epochs and (state.bad_epochs < tc.early_stopping_patience or state.epoch < tc.min_epochs):
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        train_sampler.set_epoch(epoch)
        train_sampler.positive_fraction = _positive_fraction(cfg, epoch, own_share)
        train_ds.set_epoch(epoch)
        frozen = epoch <= tc.freeze_encoder_epochs
        _set_encoder_frozen(model, frozen, trainable)
        net.train()
        if frozen:
            model.encoder.eval()  # a frozen encoder keeps its BatchNorm statistics too
        train_acc = SegMetrics()
        batches = tqdm(train_dl, desc=f"{cfg.model.encoder} epoch {epoch}/{tc.epochs}", leave=False,
                       disable=None if tc.progress and info.is_main else True)
        for batch in batches:
            x, y, label = to_device(batch, device, tc.channels_last)
            with autocast(device, use_amp):
                logits, cls_logit = split_output(net(x))
            loss, _ = loss_fn(logits, y, cls_logit, label)
            optim.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.grad_clip:
                scaler.unscale_(optim)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            scaler.step(optim)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update(model)
            loss_value = loss.item()
            train_acc.update(torch.sigmoid(logits.detach().float()) > tc.threshold, y, loss_value)
            batches.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
        train_acc.sums = all_reduce_sum(train_acc.sums, info)
        val_acc = evaluate(judged, val_dl, loss_fn, device, tc.threshold, use_amp, tc.channels_last)
        val_acc.sums = all_reduce_sum(val_acc.sums, info)
        val = val_acc.compute()
        sched.epoch_end(val["loss"])
        if best_k is not None:
            best_k.offer(val["loss"], epoch, judged)
        state.empty_epochs = state.empty_epochs + 1 if val.get("pos_empty") == 1.0 else 0
        if state.empty_epochs == COLLAPSE_EPOCHS and info.is_main:
            line = collapse_line(cfg.model.encoder, COLLAPSE_EPOCHS)
            state.collapsed.append(f"epoch {epoch}: {line}")
            print(line, flush=True)  # said while training, whatever train.progress says
        # On a few validation images the loss of a barely trained model can be its lowest (seen: epoch 3
        # of 20 "best", test dice_pos 0.05): before train.min_epochs no epoch is a candidate for the best.
        eligible = epoch >= min(tc.min_epochs, tc.epochs)
        improved = eligible and val["loss"] < state.best_val
        if improved:
            state.best_val, state.best_epoch, state.bad_epochs = val["loss"], epoch, 0
        elif eligible:
            state.bad_epochs += 1
        state.epoch = epoch
        row = {"epoch": epoch, "train_loss": train_acc.compute()["loss"], "val_loss": val["loss"], "val_iou": val["iou"],
               "val_iou_pos": val["iou_pos"], "val_dice_pos": val["dice_pos"], "val_dice_kaggle": val["dice_kaggle"],
               "val_pixel_accuracy": val["pixel_accuracy"], "val_pos_empty": val["pos_empty"], "lr": optim.param_groups[0]["lr"],
               "seconds": round(time.perf_counter() - t0, 2)}
        state.history.append(row)
        if info.is_main:
            if on_first_write is not None:
                on_first_write()
                on_first_write = None
            if improved:
                run.save_weights(judged.state_dict(), cfg, split_table, state.__dict__)
            extra = {"ema": ema.state_dict()} if ema is not None else {}
            if best_k is not None:
                extra["best_k"] = best_k.state_dict()
            run.save_resume_state({"model": model.state_dict(), "config": config_mod.to_dict(cfg), "state": state.__dict__,
                                   "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
                                   "rng": torch.get_rng_state(), **extra})
            run.write_history(HISTORY_FIELDS, state.history)
            if tc.progress:
                print(f"[{cfg.model.encoder}] epoch {epoch}: train_loss {row['train_loss']:.4f} val_loss {val['loss']:.4f} "
                      f"val_dice_pos {val['dice_pos']:.4f} val_iou {val['iou']:.4f} lr {row['lr']:.2e} ({row['seconds']}s)",
                      flush=True)
        if broadcast_flag(state.bad_epochs >= tc.early_stopping_patience and epoch >= tc.min_epochs, info):
            break
    if best_k is not None and len(best_k.items) >= 2:
        _average_best(cfg, best_k, judged, train_ds, val_dl, loss_fn, device, state, run, split_table, info)
    barrier(info)
    return state


def _average_best(cfg: Config, best_k: BestK, like: torch.nn.Module, train_ds: SegDataset, val_dl: DataLoader,
                  loss_fn: CompositeLoss, device: torch.device, state: TrainState, run: Run, split_table: pd.DataFrame,
                  info: DistInfo) -> None:
    """Average the best epochs' weights, recompute BatchNorm on the training images (no augmentation),
    and keep the average as the best weights when it validates better than the best single epoch."""
    tc = cfg.train
    avg = copy.deepcopy(like)
    epochs = best_k.average_into(avg)
    plain = SegDataset(train_ds.cache, train_ds.rows)
    recompute_batchnorm(avg, (b["image"] for b in DataLoader(plain, batch_size=tc.batch_size)), device)
    acc = evaluate(avg, val_dl, loss_fn, device, tc.threshold)
    acc.sums = all_reduce_sum(acc.sums, info)
    val = acc.compute()
    kept = bool(val["loss"] < state.best_val)
    state.averaged = {"epochs": sorted(epochs), "val_loss": val["loss"], "val_dice_pos": val["dice_pos"], "kept": kept}
    if kept:
        state.best_val = val["loss"]
        if info.is_main:
            run.save_weights(avg.state_dict(), cfg, split_table, state.__dict__)
    if info.is_main and tc.progress:
        print(f"[{cfg.model.encoder}] average of epochs {sorted(epochs)}: val_loss {val['loss']:.4f} "
              f"val_dice_pos {val['dice_pos']:.4f} ({'kept' if kept else 'not better; the best epoch kept'})", flush=True)
