"""One writer per folder: a second writer, in another process, gets one line naming the folder and
the process; a reader of a folder being trained says so and writes nothing into it; the lock dies
with its process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from pneumoscope import locks
from pneumoscope.cli import main
from tests.helpers import FAST, one_error_line
from tests.test_reliability import snapshot

HOLDER = ("import sys, time\nfrom pneumoscope import locks\nwith locks.hold(sys.argv[1], sys.argv[2]):\n"
          "    print('held', flush=True)\n    time.sleep(120)\n")


class Holder:
    """Another process holding a folder's lock, as a command at work there would."""

    def __init__(self, folder: Path, what: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), what], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def ws(stage2_run, tiny_synth, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stage2_run, run)
    image = sorted((tiny_synth / "png_images").glob("*.png"))[0]
    return {"run": run, "data": tiny_synth, "image": image, "tmp": tmp_path, "out": tmp_path / "p"}


# what the other process does, the folder it holds, the second writer's command
CASES = [
    ("predict while another predict writes into --out", "predict", "out",
     ["predict", "--run", "{run}", "{image}", "--out", "{out}", "--backend", "torch"]),
    ("train-seg into a run being trained", "train-seg", "run",
     ["train-seg", "--data", "{data}", "--out", "{run}", "--encoder", "resnet18", "--epochs", "1", *FAST]),
    ("train-cls on a run being trained", "train-seg", "run", ["train-cls", "--run", "{run}", "--set", "stage2.n_iter=1"]),
    ("evaluate-seg on a run being trained", "train-seg", "run", ["evaluate-seg", "--run", "{run}"]),
    ("export of a run being trained", "train-seg", "run", ["export", "--run", "{run}"]),
    ("a study into a folder another study writes", "run", "out", ["run", "--out", "{out}", "--epochs", "1", *FAST]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_second_writer_is_refused_in_one_line(case, ws, capsys):
    _, what, held, argv = case
    holder = Holder(ws[held], what)
    try:
        before = sorted(p.name for p in ws[held].iterdir())
        assert main([a.format(**ws) for a in argv]) == 2
        line = one_error_line(capsys)
        assert f"{ws[held]}: in use by process {holder.proc.pid} ({what}, since" in line
        assert sorted(p.name for p in ws[held].iterdir()) == before
    finally:
        holder.stop()
    assert main([a.format(**ws) for a in CASES[0][3]]) == 0  # the lock died with its process


def test_a_reader_of_a_run_being_trained_says_so_and_writes_nothing(ws, capsys):
    from pneumoscope import load_run

    for derived in ("model.onnx", "export.json", "backend.json", "backend-probe.npz"):  # none yet: would they be written?
        (ws["run"] / derived).unlink(missing_ok=True)
    before = snapshot(ws["run"])
    holder = Holder(ws["run"], "train-seg")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = load_run(ws["run"])
            model.predict(str(ws["image"]))
        said = [str(w.message) for w in caught]
        assert any(f"being written by process {holder.proc.pid} (train-seg" in s for s in said), said
        assert snapshot(ws["run"]) == before
        assert main(["predict", "--run", str(ws["run"]), str(ws["image"]), "--out", str(ws["out"])]) == 0
        assert "being written by process" in capsys.readouterr().out
        assert snapshot(ws["run"]) == before
    finally:
        holder.stop()


def test_the_lock_is_reentrant_within_one_process_and_leaves_no_new_folder(tmp_path):
    folder = tmp_path / "new"
    with locks.hold(folder, "outer"):
        with locks.hold(folder, "inner"):
            assert locks.is_held_here(folder) and locks.holder(folder) is None
        assert locks.is_held_here(folder)
    assert not locks.is_held_here(folder) and not folder.exists()  # created for nothing: removed again


def test_rows_listed_twice_are_collapsed_on_the_next_run(ws):
    assert main(["predict", "--run", str(ws["run"]), str(ws["image"].parent), "--out", str(ws["out"]), "--backend", "torch",
                 "--submission", str(ws["tmp"] / "sub.csv")]) == 0
    csv = ws["out"] / "predictions.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text(lines[0] + "".join(lines[1:]) + "".join(lines[1:4]))  # two predicts at once, before the lock
    assert main(["predict", "--run", str(ws["run"]), str(ws["image"].parent), "--out", str(ws["out"]), "--backend", "torch",
                 "--submission", str(ws["tmp"] / "sub.csv")]) == 0
    table = pd.read_csv(csv)
    assert len(table) == 24 and table.file.is_unique
    assert len(pd.read_csv(ws["tmp"] / "sub.csv")) == 24
