import numpy as np
import pytest
import torch

from pneumoscope.config import ModelConfig
from pneumoscope.data.cache import build_cache
from pneumoscope.data.layouts import index_dataset
from pneumoscope.errors import PneumoscopeError
from pneumoscope.stage1.unet import build_model
from pneumoscope.stage2 import extractors
from pneumoscope.stage2.features import compute_features
from pneumoscope.stage2.maskstats import MASK_STAT_NAMES, META_NAMES


@pytest.fixture(scope="module")
def setup(tiny_synth, tmp_path_factory):
    cache = build_cache(index_dataset(tiny_synth)[0], 64, tmp_path_factory.mktemp("c"))
    return cache


@pytest.mark.parametrize("head", [False, True])
def test_seg_encoder_feature_shapes_and_cache(setup, tmp_path, head):
    unet = build_model(ModelConfig(encoder="resnet18", cls_head=head))
    phi, note = extractors.build_extractor("seg-encoder", unet)
    assert "configured" in note
    rows = np.arange(5)
    fs = compute_features(unet, phi, setup, rows, torch.device("cpu"), batch_size=2, cache_file=tmp_path / "f.npz")
    n_extra = len(MASK_STAT_NAMES) + len(META_NAMES) + int(head)
    assert fs.X.shape == (5, 2 * 512 + n_extra) and len(fs.names) == fs.X.shape[1]
    assert fs.names[0] == "phi_img_0" and fs.names[512] == "phi_mask_0" and ("cls_head_prob" in fs.names) == head
    assert fs.probs.shape == (5, 64, 64) and np.isfinite(fs.X[:, :-3]).all()
    assert list(fs.ids) == setup.index.id.iloc[:5].tolist()
    again = compute_features(unet, phi, setup, rows, torch.device("cpu"), cache_file=tmp_path / "f.npz")
    np.testing.assert_array_equal(again.X, fs.X)
    assert len(list(tmp_path.glob("f-*.npz"))) == 1


def test_densenet_phi_shape():
    phi = extractors.DenseNetPhi(pretrained=False).eval()
    with torch.no_grad():
        assert phi(torch.rand(2, 1, 64, 64)).shape == (2, 1024)


def test_auto_falls_back_offline_and_unknown_name(monkeypatch):
    unet = build_model(ModelConfig(encoder="resnet18"))
    monkeypatch.setattr(extractors, "densenet_available", lambda weights=None: False)
    phi, note = extractors.build_extractor("auto", unet)
    assert phi.name == "seg-encoder" and "offline" in note
    with pytest.raises(PneumoscopeError):
        extractors.build_extractor("resnet", unet)


def test_feature_cache_is_keyed_by_the_model(setup, tmp_path):
    unet = build_model(ModelConfig(encoder="resnet18"))
    phi, _ = extractors.build_extractor("seg-encoder", unet)
    rows = np.arange(3)
    compute_features(unet, phi, setup, rows, torch.device("cpu"), cache_file=tmp_path / "f.npz", model_tag="a")
    compute_features(unet, phi, setup, rows, torch.device("cpu"), cache_file=tmp_path / "f.npz", model_tag="b")
    assert len(list(tmp_path.glob("f-*.npz"))) == 2
