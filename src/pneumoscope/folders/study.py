"""The study folder (``pneumoscope run --out``): one run per encoder under ``seg/``, the tables,
plots, metrics, model card and report; and how to tell a folder that holds a model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import config as config_mod
from ..config import Config
from ..errors import PneumoscopeError
from ..files import atomic_write, write_json
from .names import BEST, CONFIG, FOLDS, METRICS, MODEL_CARD
from .run import Run


def holds_a_model(folder: str | Path) -> bool:
    """Whether ``folder`` is a run folder (trained weights) or a study folder (its config and runs)."""
    folder = Path(folder)
    return (folder / BEST).is_file() or ((folder / CONFIG).is_file() and (folder / "seg").is_dir())


def _data_of(cfg: Config) -> tuple[str, ...]:
    """The data a config trains on, as resolved folder names (empty: the synthetic phantoms)."""
    paths = ([cfg.data.path] if cfg.data.path else []) + list(cfg.data.extra_paths)
    return tuple(str(Path(p).expanduser().resolve()) for p in paths)


class Study:
    """A study folder (``pneumoscope run --out``): one run per encoder, tables, plots, report."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._runs: dict[str, Run] = {}

    def create(self) -> None:
        """Create the folder and its sub-folders."""
        if self.root.exists() and not self.root.is_dir():
            raise PneumoscopeError(f"{self.root}: is a file, not a folder; choose another --out")
        for sub in ("", "tables", "plots"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def seg_run(self, encoder: str) -> Run:
        """The stage-1 run of one encoder (the same object each time, so what it loaded is reused)."""
        return self._runs.setdefault(encoder, Run(self.root / "seg" / encoder))

    def check_data(self, cfg: Config) -> None:
        """Refuse a folder that holds a study of other data (its config says which): a study on
        user data never replaces the demo's, nor one study another's."""
        path = self.root / CONFIG
        if not path.is_file():
            return
        try:
            earlier = config_mod.load(path)
        except PneumoscopeError:
            return  # a config no longer valid: the new study replaces it
        if _data_of(earlier) != _data_of(cfg):
            what = ", ".join(_data_of(earlier)) or "the synthetic phantoms"
            raise PneumoscopeError(f"{self.root}: holds a study of other data ({what}); name another --out, or delete it")

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

    @property
    def model_card_path(self) -> Path:
        """The study's copy of its best run's ``MODEL_CARD.md``."""
        return self.root / MODEL_CARD

    def write_report(self, page: str) -> Path:
        """``report.html``."""
        path = self.root / "report.html"
        atomic_write(path, page)
        return path


def resolve_run(folder: str | Path) -> tuple[Path, str | None]:
    """The run folder a path names: itself, or for a study folder (``run --out``) its best run, with a
    sentence saying which. A study without its result yet is one line naming the runs inside it."""
    folder = Path(folder)
    if (folder / BEST).is_file() or not ((folder / CONFIG).is_file() and (folder / "seg").is_dir()):
        return folder, None
    runs = sorted(p for p in (folder / "seg").iterdir() if (p / BEST).is_file())
    try:
        best = json.loads((folder / METRICS).read_text()).get("best_encoder")
    except (OSError, ValueError, AttributeError):
        best = None
    if isinstance(best, str) and (folder / "seg" / best / BEST).is_file():
        return folder / "seg" / best, f"{folder}: a study folder; using its best run {folder / 'seg' / best} (best validation IoU)"
    if not runs:
        raise PneumoscopeError(f"{folder}: a study folder with no trained run yet (was it interrupted?); rerun pneumoscope run")
    raise PneumoscopeError(f"{folder}: a study folder whose best run is not chosen yet; name one of its runs: "
                           + ", ".join(str(r) for r in runs))


def fold_folder(run: str | Path, k: int) -> Path:
    """Where fold ``k``'s model of a cross-validated run is (``RUN/folds/fold-k``)."""
    return Path(run) / FOLDS / f"fold-{k}"


def fold_member(folder: str | Path, k: int) -> Path:
    """The run folder of fold ``k`` of the cross-validated run ``folder`` names (a study folder: of its best
    run); one line when the run has no such fold."""
    path, _ = resolve_run(folder)
    member = fold_folder(path, k)
    if not (member / BEST).is_file():
        have = sorted(p.name for p in (path / FOLDS).glob("fold-*") if (p / BEST).is_file()) if (path / FOLDS).is_dir() else []
        raise PneumoscopeError(f"--fold {k}: {path} has no fold {k} "
                               + (f"(its folds: {', '.join(have)})" if have else "(it was not cross-validated: train-seg --folds K)"))
    return member
