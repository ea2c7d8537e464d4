"""Shared fixtures: a private cache folder, tiny synthetic datasets, the real samples."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def train_tiny_run(data: Path, out: Path, *extra: str) -> Path:
    """Train a ResNet18 U-Net at 64 px for one epoch (``extra`` CLI arguments override) into ``out``."""
    from pneumoscope.cli import main

    args = ["train-seg", "--data", str(data), "--out", str(out), "--encoder", "resnet18", "--size", "64",
            "--batch-size", "8", "--epochs", "1", "--set", "train.progress=false",
            "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25", *extra]
    assert main(args) == 0
    return out
