"""Folders written by older pneumoscopes, in one place: the pickles of pneumoscope 0.1 (refused
until ``pneumoscope upgrade-run`` converts them), the one-record ``precision.json`` and the weights
file that exports of pneumoscope <= 0.2.0 kept beside ``model.onnx``. The conversion itself is the
program :mod:`pneumoscope.upgrade`; this module only recognises the old forms."""

from __future__ import annotations

from pathlib import Path

from ..errors import PneumoscopeError
from .names import ONNX, S2_CLASSIFIER

LEGACY_BEST, LEGACY_CLASSIFIER = "best.pt", "classifier.joblib"  # pickles written by pneumoscope 0.1


def old_export_files(root: Path) -> list[Path]:
    """Weights files beside an ONNX export of pneumoscope <= 0.2.0 (removed with the derived files)."""
    return sorted(root.glob(f"{ONNX}*.data"))


def one_record_precision(data: dict) -> dict:
    """A ``precision.json`` of one record (as written before records were kept per machine) as the
    current form: that one record under its own arithmetic (none recorded: matches no machine)."""
    if "records" in data:
        return data
    key = str(data.get("arithmetic", ""))
    return {"records": {key: data}, "latest": key, "int8_sha256": data.get("int8_sha256")}


class LegacyFiles:
    """What :class:`~pneumoscope.folders.run.Run` knows of pneumoscope 0.1's pickles (mixed into it)."""

    root: Path

    def legacy_best(self) -> Path | None:
        """The pickled best checkpoint of pneumoscope 0.1, when it has not been converted."""
        path = self._p(LEGACY_BEST)
        return path if path.is_file() and not self.has_weights() else None

    def legacy_classifier(self) -> Path | None:
        """The pickled stage-2 classifier of pneumoscope 0.1, when it has not been converted."""
        path = self.stage2_dir / LEGACY_CLASSIFIER
        return path if path.is_file() and not (self.stage2_dir / S2_CLASSIFIER).is_file() else None

    def legacy_files(self) -> list[str]:
        """Pickled files of an older pneumoscope that this version no longer loads."""
        return [str(p.relative_to(self.root)) for p in (self.legacy_best(), self.legacy_classifier()) if p is not None]

    def _refuse_legacy(self) -> None:
        old = self.legacy_files()
        if old:
            raise PneumoscopeError(f"{self.root}: written by an older pneumoscope (pickled {', '.join(old)}, which can run "
                                   f"code when loaded); if you trust it, convert it once: pneumoscope upgrade-run --run {self.root} --trust-pickles")
