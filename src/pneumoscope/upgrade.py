"""``pneumoscope upgrade-run``: convert a run folder written by pneumoscope 0.1 (pickled
``best.pt`` and ``stage2/classifier.joblib``) to the formats that load without running code.

The old weights are first read with ``torch.load(weights_only=True)``, which loads tensors and
plain values only and runs no code; that is enough for a ``best.pt`` of plain data. A checkpoint
that needs more, and the scikit-learn classifier (a joblib pickle), can only be read by
unpickling, which can run any code the file holds: that is done only when the caller says
``trust_pickles`` (``--trust-pickles``), for run folders they trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd

from . import config as config_mod
from .errors import PneumoscopeError, one_line
from .folders import Run
from .stage2.saved import PortableClassifier

TRUST_HINT = "if you trust where this folder came from, rerun with --trust-pickles"


def _load_best(path: Path, trust_pickles: bool) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickles:
            raise PneumoscopeError(f"{path}: holds more than tensors and plain values, and reading it would unpickle it, "
                                   f"which can run code; {TRUST_HINT}") from exc
    except Exception as exc:
        raise PneumoscopeError(f"{path}: cannot be read ({one_line(exc)[:160]})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # the one trusted unpickling
    except Exception as exc:
        raise PneumoscopeError(f"{path}: cannot be read ({one_line(exc)[:160]})") from exc


def upgrade_run(path: str | Path, trust_pickles: bool = False) -> list[str]:
    """Convert an old run folder in place; returns what was converted. The old files are removed
    only after the new ones are written. Pickles are executed only with ``trust_pickles``."""
    run = Run(path).require()
    with run.writing("upgrade-run"):
        return _upgrade(run, trust_pickles)


def _upgrade(run: Run, trust_pickles: bool) -> list[str]:
    old_best, old_cls = run.legacy_best(), run.legacy_classifier()
    done: list[str] = []
    if old_best is None and old_cls is None:
        raise PneumoscopeError(f"{run.root}: nothing to upgrade (no pickled files of pneumoscope 0.1)")
    if old_cls is not None and not trust_pickles:
        raise PneumoscopeError(f"{old_cls}: a pickled scikit-learn classifier; converting it unpickles it, which can run "
                               f"code; {TRUST_HINT}")
    if old_best is not None:
        ck = _load_best(old_best, trust_pickles)
        if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
            raise PneumoscopeError(f"{old_best}: not a checkpoint of pneumoscope 0.1 (no model and config in it)")
        split = run.read_split()
        if split is None:
            split = pd.DataFrame(columns=["id", "patient_id", "label", "split"])
        run.save_weights(ck["model"], config_mod.from_dict(ck["config"]), split, ck.get("state", {}))
        run.adopt_derived()  # the same weights: the rule, export and summary still hold
        old_best.unlink()
        done.append(f"{old_best.name} -> {run.weights_path().name} (safetensors)")
    if old_cls is not None:
        import joblib

        summary, names, table2 = run.read_stage2_record()
        if summary is None:
            raise PneumoscopeError(f"{run.stage2_dir}: the old classifier has no readable summary; run train-cls again")
        spec, boosters = PortableClassifier.from_fitted(joblib.load(old_cls)).to_data()  # trusted: asked for above
        run.save_classifier(spec, boosters, summary, names, table2)
        old_cls.unlink()
        done.append(f"{old_cls.name} -> XGBoost boosters + JSON")
    return done
