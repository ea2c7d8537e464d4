import subprocess
import sys

import pandas as pd
import pytest
import torch

from pneumoscope import config
from pneumoscope.stage1.pipeline import train_seg
from tests.helpers import free_port


def _cfg(data, cache_dir, **train):
    sets = [f"data.path={data}", f"data.cache_dir={cache_dir}", "data.size=64", "model.encoder=resnet18",
            "train.batch_size=8", "train.progress=false", "data.val_fraction=0.25", "data.test_fraction=0.25"]
    sets += [f"train.{k}={v}" for k, v in train.items()]
    return config.load("demo", sets)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.slow
def test_resume_reaches_the_same_result(tiny_synth, cache_dir, tmp_path):
    full = train_seg(_cfg(tiny_synth, cache_dir, epochs=3), tmp_path / "full")
    train_seg(_cfg(tiny_synth, cache_dir, epochs=2), tmp_path / "cut")
    resumed = train_seg(_cfg(tiny_synth, cache_dir, epochs=3), tmp_path / "cut", resume=True)
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = pd.read_csv(tmp_path / "full" / "history.csv").drop(columns="seconds")
    hb = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb)
    assert full == resumed
    for name in ("config.yaml", "split.csv", "best.safetensors", "metrics.json"):
        assert (tmp_path / "full" / name).is_file()


def test_early_stopping_on_flat_validation_loss(tiny_synth, cache_dir, tmp_path):
    m = train_seg(_cfg(tiny_synth, cache_dir, epochs=10, lr=0.0, early_stopping_patience=2), tmp_path / "r")
    hist = pd.read_csv(tmp_path / "r" / "history.csv")
    assert len(hist) == 3 and m["epochs_run"] == 3 and m["best_epoch"] == 1


@pytest.mark.slow
def test_plateau_halves_the_learning_rate(tiny_synth, cache_dir, tmp_path):
    train_seg(_cfg(tiny_synth, cache_dir, epochs=5, lr=1e-3, plateau_patience=0, early_stopping_patience=10), tmp_path / "r")
    hist = pd.read_csv(tmp_path / "r" / "history.csv")
    best = float("inf")
    for prev_lr, row in zip([1e-3] + hist.lr.tolist()[:-1], hist.itertuples()):
        improved = row.val_loss < best * (1 - 1e-4)  # torch's default relative threshold
        best = min(best, row.val_loss)
        assert row.lr == pytest.approx(prev_lr if improved else prev_lr * 0.5)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_synth, cache_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "pneumoscope", "train-seg", "--data", str(tiny_synth),
           "--size", "64", "--epochs", "2", "--batch-size", "4", "--encoder", "resnet18", "--out", str(tmp_path / "ddp"),
           "--set", f"data.cache_dir={cache_dir}", "--set", "train.progress=false",
           "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    hist = pd.read_csv(tmp_path / "ddp" / "history.csv")
    assert len(hist) == 2 and hist.val_loss.notna().all()
    assert (tmp_path / "ddp" / "metrics.json").is_file()


def test_retraining_clears_artefacts_of_the_old_weights(tiny_synth, cache_dir, tmp_path):
    run = tmp_path / "r"
    train_seg(_cfg(tiny_synth, cache_dir, epochs=1), run)
    (run / "model.onnx").write_bytes(b"stale")
    (run / "stage2").mkdir()
    (run / "stage2" / "classifier.joblib").write_bytes(b"stale")
    train_seg(_cfg(tiny_synth, cache_dir, epochs=1), run)
    assert not (run / "model.onnx").exists() and not (run / "stage2").exists()
    assert (run / "postprocess.json").is_file()  # searched again for the new weights
