"""predict under torchrun (2 CPU processes, gloo): the merged outputs equal one process's, row for
row and mask for mask; a process killed mid-way and the job run again give every image once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumoscope import locks
from pneumoscope.cli import main
from pneumoscope.inference.torchrun import share

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("n, batch, world", [(0, 4, 2), (1, 4, 2), (9, 4, 2), (10, 3, 3), (17, 1, 4), (8, 8, 5)])
def test_every_file_goes_to_one_process_in_single_process_batches(n, batch, world):
    files = [Path(f"f{k}") for k in range(n)]
    parts = [share(files, batch, r, world) for r in range(world)]
    assert sorted(sum(parts, []), key=str) == sorted(files, key=str)
    for part in parts:  # each part is whole batches of the single-process cut
        starts = [files.index(f) for f in part[::batch]]
        assert all(s % batch == 0 for s in starts)


def torchrun(*args: str, procs: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
                             str(_port()), "-m", "pneumoscope", "--", "predict", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _port() -> int:
    from tests.helpers import free_port

    return free_port()


@pytest.fixture(scope="module")
def archive(tiny_synth, tmp_path_factory) -> Path:
    """49 radiographs (phantoms under several names, two with the same stem) and one unreadable file."""
    root = tmp_path_factory.mktemp("archive")
    pngs = sorted((tiny_synth / "png_images").glob("*.png"))
    for k in range(2):
        for f in pngs:
            shutil.copy(f, root / f"{k}_{f.name}")
    (root / "sub").mkdir()
    shutil.copy(pngs[0], root / "sub" / f"0_{pngs[0].name}")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


@pytest.mark.slow
def test_two_processes_give_what_one_process_gives(trained_run, archive, tmp_path):
    common = ["--backend", "torch", "--batch-size", "4", "--skip-bad", "--overlay-size", "64"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["predict", "--run", str(trained_run), str(archive), "--out", str(one), "--submission",
                 str(one / "sub.csv"), *common]) == 0
    job = torchrun("--run", str(trained_run), str(archive), "--out", str(two), "--submission", str(two / "sub.csv"), *common)
    out, _ = job.communicate(timeout=300)
    assert job.returncode == 0, out
    assert "predicted 49 images" in out and "skipped 1" in out and "2 processes" in out
    assert (one / "predictions.csv").read_bytes() == (two / "predictions.csv").read_bytes()  # row for row
    assert (one / "skipped.csv").read_bytes() == (two / "skipped.csv").read_bytes()
    assert (one / "sub.csv").read_bytes() == (two / "sub.csv").read_bytes()
    for sub in ("masks", "overlays"):
        names = sorted(p.name for p in (one / sub).iterdir())
        assert names == sorted(p.name for p in (two / sub).iterdir()) and len(names) == 49
        for name in names:
            assert (one / sub / name).read_bytes() == (two / sub / name).read_bytes(), name
    assert not (two / "parts").exists()


def _rank_pid(job: subprocess.Popen, rank: int) -> int | None:
    """The pid of the worker process of ``rank`` under a torchrun job."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == job.pid and f"RANK={rank}".encode() in env:
            return int(pid)
    return None


@pytest.mark.slow
def test_a_process_killed_mid_way_and_the_job_run_again_give_every_image_once(trained_run, archive, tmp_path):
    out = tmp_path / "out"
    args = ["--run", str(trained_run), str(archive), "--out", str(out), "--backend", "torch", "--batch-size", "1",
            "--skip-bad", "--gradcam"]
    job = torchrun(*args)
    part = out / "parts" / "rank-00001.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if part.is_file() and sum(1 for _ in open(part)) >= 4:  # rank 1 is mid-way (3 rows of its 25)
            pid = _rank_pid(job, 1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.005)
    job.communicate(timeout=120)
    assert job.returncode != 0  # the job stopped with its process
    done_before = sum(1 for _ in open(part)) - 1
    assert 3 <= done_before < 25, done_before
    again = torchrun(*args)
    text, _ = again.communicate(timeout=300)
    assert again.returncode == 0, text
    table = pd.read_csv(out / "predictions.csv")
    files = sorted(str(p.resolve()) for p in archive.rglob("*.png") if p.name != "broken.png")
    assert len(table) == len(files) and table.file.is_unique and sorted(table.file) == files
    assert pd.read_csv(out / "skipped.csv").file.str.endswith("broken.png").tolist() == [True]
    assert len(list((out / "masks").glob("*.png"))) == len(files) and not (out / "parts").exists()


def test_a_plain_predict_merges_parts_a_killed_job_left(trained_run, archive, tmp_path):
    """Parts of a job killed before it merged count as done for the next predict (of any kind)."""
    out = tmp_path / "out"
    assert main(["predict", "--run", str(trained_run), str(archive), "--out", str(out), "--backend", "torch",
                 "--skip-bad"]) == 0
    table = pd.read_csv(out / "predictions.csv")
    (out / "parts").mkdir()
    half = len(table) // 2
    table.iloc[half:].to_csv(out / "parts" / "rank-00001.csv", index=False)
    table.iloc[:half].to_csv(out / "predictions.csv", index=False)
    assert main(["predict", "--run", str(trained_run), str(archive), "--out", str(out), "--backend", "torch",
                 "--skip-bad"]) == 0
    merged = pd.read_csv(out / "predictions.csv")
    assert merged.file.tolist() == table.file.tolist() and not (out / "parts").exists()
    np.testing.assert_allclose(merged.max_prob, table.max_prob)


@pytest.mark.slow
def test_a_job_into_a_folder_in_use_is_refused_by_rank_0(trained_run, archive, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with locks.hold(out, "predict"):
        job = torchrun("--run", str(trained_run), str(archive), "--out", str(out), "--backend", "torch")
        text, _ = job.communicate(timeout=300)
    assert job.returncode != 0 and "in use by process" in text
    assert not (out / "predictions.csv").exists() and not (out / "parts").exists()
