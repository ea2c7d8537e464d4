import numpy as np
import torch

from pneumoscope.data.cache import build_cache
from pneumoscope.data.dataset import EpochSampler, SegDataset
from pneumoscope.data.layouts import index_dataset
from pneumoscope.data.transforms import augmentation


def test_items_standardised_and_augmentation_seeded_by_epoch(tiny_synth, cache_dir):
    cache = build_cache(index_dataset(tiny_synth)[0], 64, cache_dir)
    ds = SegDataset(cache, np.arange(len(cache)), augmentation(hflip=True), seed=3)
    a = ds[1]
    assert a["image"].shape == (1, 64, 64) and a["mask"].shape == (1, 64, 64)
    assert abs(float(a["image"].mean())) < 1e-4 and abs(float(a["image"].std()) - 1) < 1e-2
    assert set(torch.unique(a["mask"]).tolist()) <= {0.0, 1.0}
    again = SegDataset(cache, np.arange(len(cache)), augmentation(hflip=True), seed=3)[1]
    assert torch.equal(a["image"], again["image"])
    ds.set_epoch(1)
    changed = [not torch.equal(SegDataset(cache, np.arange(len(cache)), augmentation(True), 3)[i]["image"], ds[i]["image"])
               for i in range(6)]
    assert any(changed)


def test_sampler_shards_cover_and_positive_share():
    labels = np.array([1] * 10 + [0] * 90)
    s0, s1 = EpochSampler(labels, seed=1, rank=0, world=2), EpochSampler(labels, seed=1, rank=1, world=2)
    assert len(s0) == 50 and sorted(list(s0) + list(s1)) == list(range(100))
    s0.set_epoch(2)
    assert list(s0) != list(EpochSampler(labels, seed=1, rank=0, world=2))
    share = np.mean([labels[i] for e in range(20) for i in _epoch(EpochSampler(labels, seed=0, positive_fraction=0.5), e)])
    assert 0.4 < share < 0.6


def _epoch(sampler, e):
    sampler.set_epoch(e)
    return list(sampler)
