"""Torch dataset over a cache, and an epoch sampler (shuffle, positive share, DDP shards).

Augmentation is seeded per (seed, epoch, item), so an epoch's samples do not depend on
worker count or on whether the run was resumed: a resumed run sees the same data as an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .cache import Cache
from .transforms import standardize


class SegDataset(Dataset):
    """Items of a cache as dicts: ``image`` (1,S,S) float, ``mask`` (1,S,S), ``label``, ``id``."""

    def __init__(self, cache: Cache, rows: Sequence[int], augment: Any = None, seed: int = 0) -> None:
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation stream of this epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        """Image-level labels of the items, in order."""
        return self.cache.index["label"].to_numpy()[self.rows]

    def __getitem__(self, i: int) -> dict:
        r = int(self.rows[i])
        image = np.asarray(self.cache.images[r])
        mask = np.asarray(self.cache.masks[r])
        if self.augment is not None:
            self.augment.set_random_seed(int(np.random.SeedSequence([self.seed, self.epoch, r]).generate_state(1)[0]))
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {
            "image": torch.from_numpy(standardize(image)[None]),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "label": torch.tensor(float(self.cache.index["label"].iat[r] > 0)),
            "id": str(self.cache.index["id"].iat[r]),
        }


class EpochSampler(Sampler[int]):
    """Shuffled (optionally positive-oversampled) indices, sharded by rank, seeded by epoch."""

    def __init__(self, labels: np.ndarray, shuffle: bool = True, seed: int = 0,
                 positive_fraction: float | None = None, rank: int = 0, world: int = 1) -> None:
        self.labels = np.asarray(labels)
        self.shuffle, self.seed, self.positive_fraction = shuffle, seed, positive_fraction
        self.rank, self.world = rank, world
        self.epoch = 0
        self.total = int(np.ceil(len(self.labels) / world)) * world

    def set_epoch(self, epoch: int) -> None:
        """Choose this epoch's order."""
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        n = len(self.labels)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.positive_fraction is not None and 0 < (self.labels > 0).sum() < n:
            pos = self.labels > 0
            w = np.where(pos, self.positive_fraction / pos.sum(), (1 - self.positive_fraction) / (~pos).sum())
            return rng.choice(n, size=n, replace=True, p=w / w.sum())
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.total > len(order):  # pad so that every rank gets the same count
            order = np.concatenate([order, order[: self.total - len(order)]])
        return iter(order[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return self.total // self.world
