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
