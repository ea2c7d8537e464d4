"""A model that draws nothing is called out: while training, in metrics.json, in the model card."""

import json

import pandas as pd

from pneumoscope.cli import main
from pneumoscope.stage1 import trainer


def test_a_model_forced_to_predict_empty_is_called_a_collapse(tiny_synth, tmp_path, capsys, monkeypatch):
    build = trainer.build_model

    def empty_model(cfg):
        model = build(cfg)
        model.segmentation_head[0].bias.data.fill_(-50.0)  # every pixel far below 0.5, for any step Adam takes here
        return model

    monkeypatch.setattr(trainer, "build_model", empty_model)
    out = tmp_path / "run"
    assert main(["train-seg", "--data", str(tiny_synth), "--out", str(out), "--encoder", "resnet18", "--size", "64",
                 "--epochs", "4", "--batch-size", "8", "--set", "train.progress=false", "--set", "data.val_fraction=0.25",
                 "--set", "data.test_fraction=0.25", "--set", "train.min_epochs=4"]) == 0
    said = capsys.readouterr().out
    assert said.count("[resnet18] collapse: every validation positive predicted empty for 3 epochs in a row") == 1
    assert "warning: [resnet18] collapse: every test positive (3) is predicted empty" in said
    history = pd.read_csv(out / "history.csv")
    assert (history["val_pos_empty"] == 1.0).all()
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    assert len(warnings) == 2 and warnings[0].startswith("epoch 3: [resnet18] collapse")
    card = (out / "MODEL_CARD.md").read_text()
    assert "collapse" in card and "not a medical device" in card


def test_a_model_that_draws_says_nothing(trained_run):
    assert json.loads((trained_run / "metrics.json").read_text())["warnings"] == []
