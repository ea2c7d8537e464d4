"""A run folder of pneumoscope 0.1 (pickles) is refused with the command that converts it, and
converts to files that load without unpickling."""

import shutil

import joblib
import pandas as pd
import pytest
import torch

from pneumoscope import config
from pneumoscope.cli import main
from pneumoscope.folders import Run
from pneumoscope.stage2.saved import PortableClassifier
from tests.helpers import one_error_line


@pytest.fixture
def old_run(stage2_run, tmp_path):
    """``stage2_run`` rewritten the way pneumoscope 0.1 stored it."""
    run = Run(tmp_path / "old")
    shutil.copytree(stage2_run, run.root)
    state, cfg = run.load_weights()
    torch.save({"model": state, "config": cfg, "state": {"epoch": 1}}, run.root / "best.pt")
    spec, boosters, _ = run.load_classifier()
    fitted = PortableClassifier.from_data(spec, boosters).members[0].booster
    from xgboost import XGBClassifier

    model = XGBClassifier()
    model._Booster = fitted  # a fitted sklearn-API classifier around the same booster, as 0.1 pickled it
    model.n_classes_ = 2
    joblib.dump(model, run.stage2_dir / "classifier.joblib")
    (run.root / "best.safetensors").unlink()
    (run.stage2_dir / "classifier.json").unlink()
    return run


def test_old_run_is_refused_then_upgraded(old_run, stage2_run, tiny_synth, tmp_path, capsys):
    image = str(sorted((tiny_synth / "png_images").glob("*.png"))[0])
    assert main(["predict", "--run", str(old_run.root), image, "--out", str(tmp_path / "p")]) == 2
    line = one_error_line(capsys)
    assert "older pneumoscope" in line and f"pneumoscope upgrade-run --run {old_run.root}" in line
    assert main(["upgrade-run", "--run", str(old_run.root)]) == 2  # the classifier is a pickle: asked for explicitly
    assert "can run code" in (line := one_error_line(capsys)) and "--trust-pickles" in line
    assert (old_run.root / "best.pt").exists() and (old_run.stage2_dir / "classifier.joblib").exists()
    assert main(["upgrade-run", "--run", str(old_run.root), "--trust-pickles"]) == 0
    assert "converted best.pt" in capsys.readouterr().out
    assert not (old_run.root / "best.pt").exists() and not (old_run.stage2_dir / "classifier.joblib").exists()
    assert main(["predict", "--run", str(old_run.root), image, "--out", str(tmp_path / "p2"), "--backend", "torch"]) == 0
    assert main(["predict", "--run", str(stage2_run), image, "--out", str(tmp_path / "p3"), "--backend", "torch"]) == 0
    a, b = (pd.read_csv(tmp_path / d / "predictions.csv").iloc[0] for d in ("p2", "p3"))
    assert a.p_pneumothorax == pytest.approx(b.p_pneumothorax, abs=1e-6) and a.mask_area_px == b.mask_area_px
    assert main(["upgrade-run", "--run", str(old_run.root)]) == 2
    assert "nothing to upgrade" in one_error_line(capsys)
    assert config.from_dict(Run(old_run.root).load_weights()[1]) == Run(stage2_run).read_config()
