"""The run folder: every file name in it, and how each file is written and read.

A *run* is what ``train-seg`` writes (one U-Net and what was derived from it); a *study* is
what ``run`` writes (one run per encoder under ``seg/``, the tables, plots and the report).
No other module builds a path inside either: they ask a :class:`Run` or a :class:`Study`.

Files are written to a temporary name and renamed, so a killed command leaves the old
file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from . import config as config_mod
from .config import Config
from .errors import BadItemError, PneumoscopeError

CONFIG = "config.yaml"
SPLIT = "split.csv"
HISTORY = "history.csv"
METRICS = "metrics.json"
SKIPPED = "skipped.csv"
POSTPROCESS = "postprocess.json"
ONNX = "model.onnx"
EXPORT_REPORT = "export.json"
BACKEND_MEMO = "backend.json"
STAGE2 = "stage2"
CHECKPOINTS = {"best": "best.pt", "last": "last.pt"}
S2_CLASSIFIER = "classifier.joblib"
S2_SUMMARY = "stage2.json"
S2_FEATURE_NAMES = "feature_names.json"
S2_TABLE2 = "table2.csv"
S2_FEATURES = "features.npz"

# What was derived from a run's weights: removed when new weights replace them.
DERIVED = (ONNX, EXPORT_REPORT, BACKEND_MEMO, POSTPROCESS, STAGE2)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        data = data.encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN and infinity written as null), written atomically."""
    atomic_write(path, json.dumps(_clean(data), indent=2) + "\n")


def write_csv(path: Path, fields: list[str], rows: Iterable[dict]) -> None:
    """A CSV with a header, written atomically."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def _read_ids_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str, "patient_id": str}, keep_default_na=False)


class Run:
    """One stage-1 run folder (``train-seg --out``): config, split, checkpoints, history,
    metrics, post-processing rule, ONNX export, backend memo and the stage-2 classifier."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._config: Config | None = None
        self.memo: dict[Any, Any] = {}  # objects built from the best weights (cleared when they change)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    def _p(self, name: str) -> Path:
        return self.root / name

    # -- the folder ---------------------------------------------------------------------
    def require(self) -> Run:
        """Raise unless this is a run folder (it has a saved config)."""
        if not self._p(CONFIG).is_file():
            raise PneumoscopeError(f"{self.root}: not a run folder (no {CONFIG})")
        return self

    def create(self) -> None:
        """Create the folder; remove temporary files a killed command left behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def clear_derived(self) -> list[str]:
        """Remove what was derived from earlier weights (ONNX export, backend choice,
        post-processing rule, stage-2 classifier); returns the names removed."""
        gone = []
        for name in DERIVED:
            path = self._p(name)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            gone.append(name)
        self.memo.clear()
        return gone

    # -- config -------------------------------------------------------------------------
    def read_config(self) -> Config:
        """The resolved config saved in the run (read once, then remembered)."""
        if self._config is None:
            self.require()
            self._config = config_mod.load(self._p(CONFIG))
        return self._config

    def write_config(self, cfg: Config) -> None:
        """Save the resolved config."""
        atomic_write(self._p(CONFIG), config_mod.dump(cfg))
        self._config = cfg

    def config_sha256(self) -> str:
        """Short hash of the saved config (identifies the model in API answers)."""
        path = self._p(CONFIG)
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else ""

    # -- split --------------------------------------------------------------------------
    def read_split(self) -> pd.DataFrame | None:
        """``id, patient_id, label, split`` of the run's images, or None when there is none."""
        path = self._p(SPLIT)
        return _read_ids_csv(path) if path.is_file() else None

    def write_split(self, split: pd.DataFrame) -> None:
        """Save the train/val/test assignment."""
        atomic_write(self._p(SPLIT), split.to_csv(index=False))

    def training_ids(self) -> set[str]:
        """Ids of the images the segmentation model trained on."""
        split = self.read_split()
        return set() if split is None else set(split.loc[split["split"] == "train", "id"])

    # -- history ------------------------------------------------------------------------
    def write_history(self, fields: list[str], rows: list[dict]) -> None:
        """history.csv: one row per epoch."""
        write_csv(self._p(HISTORY), fields, rows)

    def read_history(self) -> pd.DataFrame:
        """The per-epoch history."""
        path = self._p(HISTORY)
        if not path.is_file():
            raise PneumoscopeError(f"{self.root}: no {HISTORY} (was training started?)")
        return pd.read_csv(path)

    # -- checkpoints and the model ------------------------------------------------------
    def checkpoint_path(self, which: str = "best") -> Path:
        """The checkpoint file, checked to exist."""
        path = self._p(CHECKPOINTS[which])
        if not path.is_file():
            raise PneumoscopeError(f"{self.root}: no {path.name} checkpoint (was training finished?)")
        return path

    def has_checkpoint(self, which: str = "best") -> bool:
        """Whether the checkpoint exists."""
        return self._p(CHECKPOINTS[which]).is_file()

    def save_checkpoint(self, which: str, payload: dict) -> None:
        """Write a checkpoint atomically."""
        import torch

        path = self._p(CHECKPOINTS[which])
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        if which == "best":
            self.memo.clear()

    def load_checkpoint(self, which: str = "best") -> dict:
        """Read a checkpoint written by :meth:`save_checkpoint`."""
        import torch

        return torch.load(self.checkpoint_path(which), map_location="cpu", weights_only=False)

    def weights_tag(self) -> str:
        """Identifies the best weights (size and modification time of the checkpoint)."""
        st = self.checkpoint_path("best").stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    # -- metrics and skipped items ------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        """Where the test-split metrics are."""
        return self._p(METRICS)

    def write_metrics(self, metrics: dict, path: Path | None = None) -> Path:
        """Save metrics (to ``metrics.json`` unless ``path`` says otherwise); returns the path."""
        path = path or self.metrics_path
        write_json(path, metrics)
        return path

    def read_metrics(self) -> dict:
        """The saved test-split metrics."""
        return json.loads(self.metrics_path.read_text())

    def write_skipped(self, skipped: list[BadItemError]) -> None:
        """List skipped items (``--skip-bad``) in ``skipped.csv``; nothing is dropped silently."""
        path = self._p(SKIPPED)
        if not skipped:
            path.unlink(missing_ok=True)
            return
        write_csv(path, ["id", "path", "reason"], ({"id": e.item_id, "path": e.path, "reason": e.reason} for e in skipped))

    # -- post-processing rule -----------------------------------------------------------
    def read_postprocess(self) -> dict | None:
        """The post-processing rule searched on validation (with its scores), or None."""
        path = self._p(POSTPROCESS)
        return json.loads(path.read_text()) if path.is_file() else None

    def write_postprocess(self, rule: dict) -> None:
        """Save the post-processing rule."""
        write_json(self._p(POSTPROCESS), rule)

    # -- export and backend memo --------------------------------------------------------
    @property
    def onnx_path(self) -> Path:
        """Where the ONNX export of the best weights lives."""
        return self._p(ONNX)

    def write_export_report(self, report: dict) -> None:
        """What the export's parity check measured."""
        write_json(self._p(EXPORT_REPORT), report)

    def read_backend_memo(self) -> dict:
        """Backend choices remembered per machine."""
        path = self._p(BACKEND_MEMO)
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            return {}

    def write_backend_memo(self, memo: dict) -> None:
        """Save the backend choices."""
        write_json(self._p(BACKEND_MEMO), memo)

    # -- stage 2 ------------------------------------------------------------------------
    @property
    def stage2_dir(self) -> Path:
        """The stage-2 folder."""
        return self._p(STAGE2)

    def has_classifier(self) -> bool:
        """Whether a fitted stage-2 classifier is there."""
        return (self.stage2_dir / S2_CLASSIFIER).is_file()

    def feature_cache(self) -> Path:
        """Stem of the stage-2 feature cache files (the key is appended to it)."""
        self.stage2_dir.mkdir(parents=True, exist_ok=True)
        return self.stage2_dir / S2_FEATURES

    def save_classifier(self, model: Any, summary: dict, feature_names: list[str], table2: pd.DataFrame) -> None:
        """Save the fitted classifier, its summary (threshold, metrics), feature names and Table 2."""
        import joblib

        d = self.stage2_dir
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (S2_CLASSIFIER + ".tmp")
        joblib.dump(model, tmp)
        os.replace(tmp, d / S2_CLASSIFIER)
        write_json(d / S2_SUMMARY, summary)
        atomic_write(d / S2_FEATURE_NAMES, json.dumps(feature_names))
        atomic_write(d / S2_TABLE2, table2.to_csv(index=False, float_format="%.4f"))

    def load_classifier(self) -> tuple[Any, dict]:
        """The fitted classifier and its summary."""
        import joblib

        d = self.stage2_dir
        if not self.has_classifier():
            raise PneumoscopeError(f"{self.root}: no stage-2 classifier (run train-cls first)")
        return joblib.load(d / S2_CLASSIFIER), json.loads((d / S2_SUMMARY).read_text())


class Study:
    """A study folder (``pneumoscope run --out``): one run per encoder, tables, plots, report."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._runs: dict[str, Run] = {}

    def create(self) -> None:
        """Create the folder and its sub-folders."""
        for sub in ("", "tables", "plots"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def seg_run(self, encoder: str) -> Run:
        """The stage-1 run of one encoder (the same object each time, so what it loaded is reused)."""
        return self._runs.setdefault(encoder, Run(self.root / "seg" / encoder))

    def write_config(self, cfg: Config) -> None:
        """Save the resolved config of the study."""
        atomic_write(self.root / CONFIG, config_mod.dump(cfg))

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """``tables/<name>.csv``."""
        path = self.root / "tables" / f"{name}.csv"
        atomic_write(path, table.to_csv(index=False, float_format="%.4f"))
        return path

    def write_metrics(self, metrics: dict) -> None:
        """The study's ``metrics.json``."""
        write_json(self.root / METRICS, metrics)

    def plot_path(self, name: str) -> Path:
        """``plots/<name>.png``."""
        return self.root / "plots" / f"{name}.png"

    def write_report(self, page: str) -> Path:
        """``report.html``."""
        path = self.root / "report.html"
        atomic_write(path, page)
        return path
