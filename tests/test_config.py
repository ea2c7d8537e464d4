import pytest

from pneumoscope import config
from pneumoscope.errors import PneumoscopeError


def test_paper_config_is_the_papers_protocol():
    c = config.load("paper")
    assert (c.data.size, c.train.batch_size, c.train.lr, c.train.epochs) == (512, 32, 1e-3, 25)
    assert (c.train.early_stopping_patience, c.train.plateau_factor, c.train.plateau_patience) == (5, 0.5, 3)
    assert c.train.deterministic and not c.train.amp
    assert c.encoders == ("resnet34", "vgg16", "inceptionresnetv2", "xception")
    assert c.loss.dice_smooth == 1e-5 and c.loss.focal_gamma == 2.0


def test_overrides_and_types(tmp_path):
    c = config.load("demo", ["train.lr=5e-4", "model.encoder_weights=null", "data.hflip=true", "encoders=[a, b]"])
    assert c.train.lr == 5e-4 and c.model.encoder_weights is None and c.data.hflip is True
    assert c.encoders == ("a", "b")
    (tmp_path / "c.yaml").write_text(config.dump(c))
    assert config.load(tmp_path / "c.yaml") == c


@pytest.mark.parametrize("bad", [["train.lrr=1"], ["nosection.x=1"], ["train.epochs=abc"], ["train.epochs=1.5"],
                                 ["data.hflip=maybe"], ["novalue"]])
def test_bad_keys_and_values_fail(bad):
    with pytest.raises(PneumoscopeError):
        config.load("demo", bad)


def test_missing_config_file():
    with pytest.raises(PneumoscopeError, match="not found"):
        config.load("does-not-exist.yaml")


@pytest.mark.parametrize("key, value", [("train.lr", "inf"), ("train.lr", ".nan"), ("loss.focal_gamma", "-.inf"),
                                        ("train.grad_clip", "inf"), ("data.val_fraction", ".nan"),
                                        ("stage2.target_sensitivity", "inf")])
def test_every_numeric_key_refuses_non_finite_values(key, value):
    with pytest.raises(PneumoscopeError, match=f"config key {key}: .* it must be a finite number"):
        config.load("demo", [f"{key}={value}"])


def test_a_section_set_as_a_mapping_is_merged_not_reset():
    """``--set train={}`` once reset every train key (and the --epochs flag before it) to the defaults."""
    c = config.load("demo", ["train.epochs=3", "train={}", "train={lr: 0.0002}"])
    base = config.load("demo")
    assert c.train.epochs == 3 and c.train.lr == 2e-4 and c.train.batch_size == base.train.batch_size
