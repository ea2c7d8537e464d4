"""``evaluate-cls``: a trained run's whole pipeline judged on a labelled folder it never saw.

External validation is the test a model must pass before anyone trusts it on their own images. The
run is used exactly as ``predict`` uses it (stage 1 on the chosen backend, its post-processing rule,
stage 2 at the run's threshold), on every labelled image of the folder (a Kaggle PNG layout, a SIIM
DICOM + RLE folder, or a folder with ``labels.csv`` / ``normal/`` + ``pneumothorax/``), with the
metadata the layout gives (sex, age, view) as stage 2 was fitted with. Images the run trained on or
fitted its classifier on (by id: its own train and val split, and the classifier's fitting images
recorded in the stage-2 summary) are left out and counted.

Reported, each with a 95 % bootstrap interval over patients: ROC AUC, average precision,
sensitivity and specificity at the run's threshold, per-class precision / recall / F1, and the
expected calibration error, with a reliability diagram (images per bin written on it), the backend
that ran stage 1 (its name carries the precision), and a warning line when the numbers show a
classifier no better than chance (:mod:`pneumoscope.soundness`). Written beside the run's own files
(``cls-<data>.json``, ``cls-<data>.csv`` with each image's id, label, P(pneumothorax) and
decision, ``cls-<data>-reliability.png``) or to ``--out``; never over them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import soundness
from ..data.io import MIN_SIDE, read_image
from ..data.layouts import index_dataset
from ..errors import PneumoscopeError
from ..files import write_csv, write_json
from ..folders import Run, resolve_run
from ..inference.options import PredictOptions
from ..inference.predictor import Predictor
from ..stage2 import classifier as clf


def evaluate_cls(run: str | Path | Run, data: str | Path, layout: str = "auto", skip_bad: bool = False,
                 out: str | Path | None = None, backend: str = "auto", say=None) -> dict:
    """Classification metrics (with intervals) of a run's pipeline on the labelled images of ``data``."""
    if not isinstance(run, Run):
        path, note = resolve_run(run)  # a study folder: its best run
        if note and say is not None:
            say(note)
        run = Run(path)
    run.require()
    if out is not None and Path(out).is_dir():
        raise PneumoscopeError(f"--out {out}: is a folder; name the JSON file to write")
    if not run.has_classifier():
        raise PneumoscopeError(f"{run.root}: no stage-2 classifier for its current weights (run train-cls first)")
    index, bad = index_dataset(data, layout, skip_bad)
    labelled = index[index["label"] >= 0].reset_index(drop=True)
    split = run.read_split()
    seen = set() if split is None else set(split.loc[split["split"].isin(["train", "val"]), "id"])
    summary, _, _ = run.read_stage2_record()
    seen |= set(map(str, (summary or {}).get("fit_ids", [])))  # the images the classifier was fitted on
    left_out = int(labelled["id"].isin(seen).sum())
    labelled = labelled[~labelled["id"].isin(seen)].reset_index(drop=True)
    y = labelled["label"].to_numpy().astype(int)
    if len(np.unique(y)) < 2:
        raise PneumoscopeError(f"{data}: evaluating a classifier needs normal and pneumothorax images; "
                               f"this folder has {int((y == 1).sum())} pneumothorax and {int((y == 0).sum())} normal "
                               f"(after leaving out {left_out} the run trained on)")
    pred = Predictor(run, PredictOptions(backend=backend), say)
    probs = []
    for start in range(0, len(labelled), 8):
        chunk = labelled.iloc[start:start + 8]
        images, metas = [], []
        for r in chunk.itertuples():
            img, meta = read_image(r.image_path, min_side=MIN_SIDE)
            images.append(img)
            metas.append({**meta, "sex": r.sex or meta.get("sex", ""), "age": r.age if r.age == r.age else meta.get("age"),
                          "view": r.view or meta.get("view", "")})
        probs += [res.p_pneumothorax for res in pred.predict_batch(images, metas)]
    p = np.asarray(probs, dtype=np.float64)
    patients = labelled["patient_id"].astype(str).tolist()
    metrics = clf.with_intervals(y, p, pred.cls_threshold, patients)
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(str(data)).resolve().name).strip("-") or "data"
    path = Path(out) if out is not None else run.root / f"cls-{name}.json"
    plot = path.with_name(path.stem + "-reliability.png")
    from . import plots

    plots.calibration(y, {f"{name} (ECE {metrics['ece']:.3f})": p}, plot)
    table = path.with_suffix(".csv")
    decisions = (p >= pred.cls_threshold).astype(int)
    write_csv(table, ["id", "patient_id", "label", "p_pneumothorax", "decision"],
              ({"id": i, "patient_id": pid, "label": int(lab), "p_pneumothorax": f"{q:.6f}", "decision": "pneumothorax" if d else "normal"}
               for i, pid, lab, q, d in zip(labelled["id"], patients, y, p, decisions)))
    metrics.update(data=str(data), n_left_out_seen=left_out, n_skipped=len(bad), reliability_plot=str(plot),
                   per_image=str(table), run=str(run.root), weights_id=run.weights_id(),
                   backend=getattr(pred.backend, "name", None), warnings=soundness.warnings(metrics, f"the images of {data}"))
    write_json(path, metrics)
    metrics["path"] = str(path)
    return metrics
