"""Shared fixtures: a private cache folder, tiny synthetic datasets, the real samples, and the
tiny trained runs that many test modules use (trained once per session, here only)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Every test run gets its own cache, so tests never read a user's cache.
os.environ.setdefault("PNEUMOSCOPE_CACHE", tempfile.mkdtemp(prefix="pneumoscope-test-cache-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when the samples are absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data not present ({path})")
    return path


def train_tiny_run(data: Path, out: Path, *extra: str) -> Path:
    """Train a ResNet18 U-Net at 64 px for one epoch (``extra`` CLI arguments override) into ``out``."""
    from pneumoscope.cli import main

    args = ["train-seg", "--data", str(data), "--out", str(out), "--encoder", "resnet18", "--size", "64",
            "--batch-size", "8", "--epochs", "1", "--set", "train.progress=false",
            "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25", *extra]
    assert main(args) == 0
    return out


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 phantoms at 96 px in the Kaggle layout (half positive)."""
    from pneumoscope.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, n=24, size=96, seed=3, positive_rate=0.5)
    return root


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh cache folder for one test."""
    d = tmp_path / "cache"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def trained_run(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 run: 2 epochs, 12 train / 6 val / 6 test phantoms. Tests may add derived files
    (ONNX export, backend memo, predictions elsewhere) but must not retrain it."""
    return train_tiny_run(tiny_synth, tmp_path_factory.mktemp("trained") / "run", "--epochs", "2")


@pytest.fixture(scope="session")
def head_run(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 run whose U-Net has the image-level classification head."""
    return train_tiny_run(tiny_synth, tmp_path_factory.mktemp("head") / "run", "--set", "model.cls_head=true",
                          "--set", "loss.cls_weight=0.5")


@pytest.fixture(scope="session")
def seg_run(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 run with larger val/test splits (7 + 7 images), the base of the stage-2 runs."""
    return train_tiny_run(tiny_synth, tmp_path_factory.mktemp("seg") / "run", "--set", "data.val_fraction=0.3",
                          "--set", "data.test_fraction=0.3")


@pytest.fixture(scope="session")
def stage2_run(seg_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``seg_run`` with a fitted stage-2 classifier (what the server serves)."""
    from pneumoscope.cli import main

    run = tmp_path_factory.mktemp("stage2") / "run"
    shutil.copytree(seg_run, run)
    assert main(["train-cls", "--run", str(run), "--set", "stage2.n_iter=2", "--set", "stage2.cv_folds=2"]) == 0
    return run


@pytest.fixture(scope="session")
def siim_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real SIIM-ACR radiographs as hospitals send them (see ``tests.dicom_samples.siim_dicom``):
    variant -> DICOM file, each in a study of its own."""
    from tests.dicom_samples import SIIM_VARIANTS, siim_dicom

    folder = tmp_path_factory.mktemp("siim-dicom")
    return {v: siim_dicom(folder / f"{v}.dcm", v, index=k) for k, v in enumerate(SIIM_VARIANTS)}


@pytest.fixture(scope="session")
def dicom_run(stage2_run: Path, siim_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``stage2_run`` with a post-processing rule at the 70th percentile of its probabilities on a
    real radiograph, so that the tiny model draws masks on real images (what the DICOM tests need)."""
    from pneumoscope import load_run
    from pneumoscope.folders import Run
    from pneumoscope.stage1.postprocess import Rule, save_rule

    run = tmp_path_factory.mktemp("dicom-run") / "run"
    shutil.copytree(stage2_run, run)
    prob = load_run(run, backend="torch").predict(siim_sources["siim"]).prob
    t = float(np.quantile(prob, 0.7))
    save_rule(Run(run), Rule(t, 0.0, t))
    return run


@pytest.fixture(scope="session")
def fold_run(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-fold cross-validated stage-1 run (one epoch per fold): the fold ensemble and its members."""
    return train_tiny_run(tiny_synth, tmp_path_factory.mktemp("folds") / "run", "--folds", "3")
