import pytest
import torch

from pneumoscope.config import ModelConfig
from pneumoscope.errors import PneumoscopeError
from pneumoscope.stage1 import unet as unet_mod
from pneumoscope.stage1.unet import ENCODERS, build_model, canonical_encoder


@pytest.mark.parametrize("name", [n if n == "resnet18" else pytest.param(n, marks=pytest.mark.slow) for n in ENCODERS])
def test_every_encoder_forward_backward(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=name, encoder_weights=None, cls_head=True))
    x = torch.randn(2, 1, 64, 64)
    mask, label = model(x)
    assert mask.shape == (2, 1, 64, 64) and label.shape == (2, 1)
    (mask.mean() + label.mean()).backward()
    assert torch.isfinite(mask).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_aliases_and_unknown_name():
    assert canonical_encoder("InceptionResNetV2") == "inceptionresnetv2"
    assert canonical_encoder("efficientnet_b0") == "efficientnet-b0"
    with pytest.raises(PneumoscopeError, match="unknown encoder 'resnet9000'"):
        build_model(ModelConfig(encoder="resnet9000"))


def test_imagenet_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(unet_mod, "_online", lambda *a, **k: False)
    with pytest.raises(PneumoscopeError, match="no network"):
        build_model(ModelConfig(encoder="resnet18", encoder_weights="imagenet"))


def test_local_weights_file_with_rgb_stem(tmp_path):
    import segmentation_models_pytorch as smp

    rgb = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1)
    torch.save(rgb.encoder.state_dict(), tmp_path / "enc.pt")
    model = build_model(ModelConfig(encoder="resnet18", encoder_weights=str(tmp_path / "enc.pt")))
    stem = rgb.encoder.state_dict()["conv1.weight"].sum(1, keepdim=True)
    assert torch.allclose(model.encoder.conv1.weight, stem)
    assert torch.equal(model.encoder.layer1[0].conv1.weight, rgb.encoder.layer1[0].conv1.weight)
    with pytest.raises(PneumoscopeError, match="neither null"):
        build_model(ModelConfig(encoder="resnet18", encoder_weights=str(tmp_path / "missing.pt")))


def test_fold_ensemble_predicts_the_mean_of_its_members_probabilities() -> None:
    import dataclasses

    import torch

    from pneumoscope import config as _config
    from pneumoscope.stage1.unet import FoldEnsemble, build_model

    cfg = dataclasses.replace(_config.ModelConfig(), encoder="resnet18", encoder_weights=None,
                              decoder_channels=[16, 8, 8, 8, 8], members=3)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, FoldEnsemble) and len(model.members) == 3
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        mean = torch.stack([torch.sigmoid(m(x)) for m in model.members]).mean(0)
        assert torch.allclose(torch.sigmoid(model(x)), mean, atol=1e-5)
        levels = model.encoder(x)
        one = [m.encoder(x) for m in model.members]
        assert torch.allclose(levels[-1], torch.stack([o[-1] for o in one]).mean(0), atol=1e-5)
