"""``predict`` over an archive on several processes and machines, under PyTorch's own launcher::

    torchrun --nproc_per_node N -m pneumoscope -- predict --run RUN INPUTS --out OUT
    torchrun --nnodes M --node_rank K --nproc_per_node N --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m pneumoscope -- predict --run RUN INPUTS --out OUT       # OUT and INPUTS on a shared filesystem

(the ``--`` keeps torchrun's own parser from taking ``--run`` for its ``--run-path``).

- Every process lists the inputs alike (sorted), fixes every picture name (:func:`.batch.plan`),
  cuts what is left to predict into batches of ``--batch-size`` and takes batches ``rank, rank +
  world, ...``: each batch is the one a single process would have made, so the masks and rows are
  the single process's, whatever the number of processes.
- Pictures go to the shared ``masks/`` (``overlays/`` ...) under their fixed names; rows to
  ``OUT/parts/rank-K.csv``, with ``predict``'s guarantees (pictures before their row, whole rows).
- Rank 0 holds OUT's lock for the whole job (a second job, or a plain ``predict``, is refused), and
  chooses the backend first (the others then reuse its remembered choice and its ONNX export). Once
  every process has finished, it merges: ``predictions.csv`` (earlier rows, then the new ones in
  input order), ``skipped.csv`` and the submission, once, then removes ``parts/``.
- A process killed mid-way stops the job (torchrun's doing); the same command again predicts only
  what no part holds yet and merges: every image exactly once. A plain ``predict`` into a folder
  with parts left merges them first.
- CPU: the node's cores are shared out, ``cores // processes on the node`` threads each (PyTorch and
  ONNX Runtime) and one decoding thread each; GPU: each process takes its local GPU.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .. import distributed, locks
from ..errors import PneumoscopeError
from ..files import atomic_write, csv_text, write_csv
from .batch import check_fields, plan, predict_loop, summary
from .options import PredictOptions
from .prediction_folder import SKIPPED_FIELDS, PredictionFolder, read_skipped
from .predictor import Predictor


def share(todo: list[Path], batch_size: int, rank: int, world: int) -> list[Path]:
    """Rank ``rank``'s files: batches ``rank, rank + world, ...`` of ``todo`` cut into ``batch_size``."""
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    return [f for b in batches[rank::world] for f in b]


def threads_per_process() -> int:
    """This machine's cores shared among the job's processes on it (at least one each)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(1, local))


def predict_ranks(folder: PredictionFolder, run: str | Path, files: list[Path], sub_path: Path | None,
                  opts: PredictOptions, say) -> dict:
    """This process's share of a torchrun job, and (rank 0) the merge; returns the job's summary
    (rank 0) or this process's (``"main": False``)."""
    info, device = distributed.init(opts.device)
    if device.type == "cpu":
        opts = dataclasses.replace(opts, threads=opts.threads or threads_per_process(), workers=opts.workers or 1)
    opts = dataclasses.replace(opts, device=str(device))
    say = say if info.is_main else None
    t0 = time.perf_counter()
    hold, why = None, ""
    if info.is_main:
        try:
            hold = locks.hold(folder.root, "predict (torchrun)")
            hold.__enter__()
            if not opts.resume:
                folder.csv.unlink(missing_ok=True)
                folder.skipped_csv.unlink(missing_ok=True)
                shutil.rmtree(folder.parts, ignore_errors=True)
            folder.parts.mkdir(parents=True, exist_ok=True)
        except (PneumoscopeError, OSError) as exc:
            hold, why = None, str(exc)
    try:
        if not distributed.broadcast_flag(not why, info):
            raise PneumoscopeError(why or f"{folder.root}: rank 0 could not take the folder (see its message)")
        earlier = folder.all_rows()  # every process reads the same state ...
        todo = plan(folder, earlier, files)
        distributed.barrier(info)  # ... before any writes
        mine = share(todo, opts.batch_size, info.rank, info.world)
        view = folder.part(info.rank)
        pred = None
        if not info.is_main:
            distributed.barrier(info)  # rank 0 chooses the backend first (export, probe, memo)
        if mine:
            pred = Predictor(run, opts, say)
        fields = check_fields(folder, earlier, pred, bool(opts.dicom_out)) if pred is not None or earlier else []
        if info.is_main:
            if pred is not None and mine:
                pred.choose_backend(_probe(mine[0]))
            distributed.barrier(info)
        n_done, skipped, _ = predict_loop(view, pred, mine, fields, opts) if mine else (0, [], 0.0)
        if skipped:
            write_csv(view.skipped_csv, SKIPPED_FIELDS, skipped)
        totals = distributed.all_reduce_sum(torch.tensor([float(n_done), float(len(skipped))]), info)
        if not info.is_main:
            return {**summary(n_done, len(skipped), len(skipped), 0, 0.0, pred), "main": False}
        n_skipped = merge(folder, files, {str(f) for f in todo})
        if sub_path is not None:
            folder.write_submission(sub_path, folder.rows())
        seconds = time.perf_counter() - t0
        out = summary(int(totals[0]), int(totals[1]), n_skipped, len(files) - len(todo), seconds, pred, skipped,
                      view.dicom_notes)
        out["notes"] = out["notes"] + [f"{info.world} processes ({distributed_line(opts, device)})"]
        return out
    finally:
        if hold is not None:
            hold.__exit__(None, None, None)
        distributed.cleanup(info)


def distributed_line(opts: PredictOptions, device) -> str:
    """How each process ran, for the summary."""
    return f"each on {device}" if device.type == "cuda" else f"{opts.threads} threads each"


def _probe(path: Path):
    """One image of this process's share, read as predict reads it (the backend is chosen on it)."""
    from ..data.io import MIN_SIDE, read_image

    try:
        return read_image(path, min_side=MIN_SIDE)[0]
    except PneumoscopeError:
        return np.zeros((64, 64), np.float32)


def merge(folder: PredictionFolder, files: list[Path], attempted: set[str]) -> int:
    """Fold every part into ``predictions.csv`` (earlier rows first, then the parts' in input order)
    and ``skipped.csv``, through temporary names; then remove ``parts/``. Returns the skipped count."""
    order = {str(f): k for k, f in enumerate(files)}
    main, rows = folder.rows(), folder.all_rows()  # all_rows: the folder's rows first, then the parts' new ones
    new = sorted(rows[len(main):], key=lambda r: order.get(r["file"], len(order)))
    if new:
        atomic_write(folder.csv, csv_text(list(rows[0]), main + new))
    seen = {r["file"] for r in rows}
    skipped = {r["file"]: r["reason"] for r in read_skipped(folder.skipped_csv) if r["file"] not in attempted}
    for view in folder.part_views():
        skipped.update((r["file"], r["reason"]) for r in read_skipped(view.skipped_csv))
    skipped = {f: why for f, why in skipped.items() if f not in seen}
    if skipped:
        write_csv(folder.skipped_csv, SKIPPED_FIELDS, [{"file": f, "reason": why} for f, why in skipped.items()])
    else:
        folder.skipped_csv.unlink(missing_ok=True)
    shutil.rmtree(folder.parts, ignore_errors=True)
    return len(skipped)
