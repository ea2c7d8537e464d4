"""The whole study from the CLI on a tiny config: Table 1, Table 2, metrics, the report."""

from collections import Counter

import pandas as pd
import pytest

from pneumoscope import config
from pneumoscope.cli import main
from pneumoscope.data import prepare
from pneumoscope.errors import PneumoscopeError
from pneumoscope.folders import Run
from tests.helpers import FAST


@pytest.mark.slow
def test_run_end_to_end_on_a_tiny_config(tiny_synth, tmp_path, capsys, monkeypatch):
    calls = Counter()
    for owner, name in ((Run, "load_weights"), (prepare, "index_dataset"), (config, "load")):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, _f=original, _n=name, **k: calls.update([_n]) or _f(*a, **k))
    out = tmp_path / "study"
    assert main(["run", "--data", str(tiny_synth), "--epochs", "1", "--out", str(out), *FAST,
                 "--set", "encoders=[resnet18, mobilenet_v2]", "--set", "data.val_fraction=0.25",
                 "--set", "data.test_fraction=0.25", "--set", "stage2.n_iter=2", "--set", "stage2.cv_folds=2"]) == 0
    table = pd.read_csv(out / "tables" / "table1.csv")
    assert table.encoder.tolist() == ["resnet18", "mobilenet_v2"]
    # The dataset is indexed once, the config read once, each encoder's best weights loaded once.
    assert calls == {"index_dataset": 1, "load": 1, "load_weights": 2}
    assert {"loss", "iou", "pixel_accuracy", "dice_pos"} <= set(table.columns)
    assert (out / "seg" / "mobilenet_v2" / "best.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "best encoder" in printed and "Table 2" in printed and "report:" in printed
    assert "encoders: resnet18, mobilenet_v2; up to 1 epochs" in printed.splitlines()[0]  # said first, before the silent caching
    assert len(pd.read_csv(out / "tables" / "table2.csv")) == 4
    metrics = pd.read_json(out / "metrics.json", typ="series")
    assert {"table1", "best_encoder", "stage2", "table2"} <= set(metrics.index)
    page = (out / "report.html").read_text()
    assert "Table 1" in page and "Table 2" in page and page.count("data:image/png;base64,") == 5
    assert "http://" not in page and "https://" not in page  # self-contained
    assert f"Data: <b>{tiny_synth}</b>" in page and "t = the decision threshold" in page
    assert "white-space:pre-wrap" in page  # the model card's long lines wrap instead of being cut off
    for name in ("training_curves", "roc_pr", "confusion", "calibration", "overlays"):
        assert (out / "plots" / f"{name}.png").is_file()
    # the study folder stands for its best run wherever a run is asked for (it once said "no trained weights")
    from pneumoscope import load_run

    model = load_run(out, backend="torch")
    assert model.run.root == out / "seg" / metrics["best_encoder"]
    assert f"using its best run {out / 'seg' / metrics['best_encoder']}" in model.notes[0]


def test_a_study_without_its_result_names_its_runs(tmp_path, capsys):
    from pneumoscope.folders import resolve_run

    study = tmp_path / "study"
    (study / "seg" / "resnet18").mkdir(parents=True)
    (study / "config.yaml").write_text("{}\n")
    with pytest.raises(PneumoscopeError, match="no trained run yet"):
        resolve_run(study)
    (study / "seg" / "resnet18" / "best.safetensors").write_bytes(b"")
    with pytest.raises(PneumoscopeError, match=f"name one of its runs: {study / 'seg' / 'resnet18'}"):
        resolve_run(study)
    assert resolve_run(study / "seg" / "resnet18") == (study / "seg" / "resnet18", None)


def test_a_study_on_user_data_never_replaces_another_studys_folder(tiny_synth, tmp_path, capsys):
    """``run --data X`` without --out once wrote into runs/demo and replaced the demo study."""
    from pneumoscope.cli.commands import default_study_folder
    from pneumoscope.folders import Study

    demo = Study(tmp_path / "demo")
    demo.create()
    demo.write_config(config.load("demo"))
    before = (tmp_path / "demo" / "config.yaml").read_bytes()
    assert main(["run", "--data", str(tiny_synth), "--out", str(tmp_path / "demo"), *FAST]) == 2
    assert "holds a study of other data (the synthetic phantoms)" in capsys.readouterr().err
    assert (tmp_path / "demo" / "config.yaml").read_bytes() == before
    assert default_study_folder(config.load("demo")) == "runs/demo"
    assert default_study_folder(config.load("demo", [f"data.path={tiny_synth}"])) == f"runs/{tiny_synth.name}"
