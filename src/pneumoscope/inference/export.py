"""ONNX export of a run's U-Net with a parity check against PyTorch.

The graph takes ``image`` (N, 1, H, W) standardised float32 with dynamic batch and size
(multiples of 32) and returns ``prob`` (N, 1, H, W) and, for models with a head, ``cls``
(N, 1) logits. The export is accepted only when ONNX Runtime's probabilities differ from
PyTorch float32 by less than 1e-4 and the 0.5-thresholded masks are equal, checked on
phantoms at the training size and at another size.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.synth import render
from ..data.transforms import model_input, to_model_size
from ..errors import PneumoscopeError
from ..files import check_writable_folder, file_sha256
from ..folders import Run
from ..stage1.unet import load_model
from .agreement import masks_agree
from .backends import OnnxBackend, TorchBackend

PARITY_TOLERANCE = 1e-4


class _Exported(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            return torch.sigmoid(out[0]), out[1]
        return torch.sigmoid(out)


def sample_inputs(size: int, n: int = 4, seed: int = 123) -> np.ndarray:
    """Standardised phantom images (half positive) at ``size``: inputs for parity checks."""
    ims = [render(max(size, 64), i % 2 == 1, np.random.default_rng([seed, i])).image for i in range(n)]
    return model_input(np.stack([to_model_size(im / 255.0, size) for im in ims]))


def parity(a, b, x: np.ndarray) -> dict:
    """Max |prob difference| and whether the 0.5 masks agree where ``a`` is decided, ``b`` against ``a`` on ``x``."""
    pa, _ = a(x)
    pb, _ = b(x)
    return {"max_abs_diff": float(np.abs(pa - pb).max()), "masks_equal": masks_agree(pb, pa)}


def _write_onnx(wrapper: nn.Module, x: torch.Tensor, path: Path, names: list[str]) -> None:
    """One self-contained ONNX file with dynamic batch and size. The TorchScript exporter first:
    1.3 s for a ResNet34 U-Net against 6 s for the torch.export-based one, and ONNX Runtime runs
    its graph as fast; the newer exporter when the older one is gone or fails."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            axes = {"image": {0: "batch", 2: "height", 3: "width"}, **{n: {0: "batch"} for n in names}}
            torch.onnx.export(wrapper, (x,), str(path), input_names=["image"], output_names=names,
                              dynamic_axes=axes, dynamo=False, opset_version=17)
            return
        except Exception:  # noqa: BLE001 - any failure of the legacy path: try the current exporter
            path.unlink(missing_ok=True)
        dims = {0: torch.export.Dim("batch", max=4096), 2: 32 * torch.export.Dim("h32", min=1, max=256),
                3: 32 * torch.export.Dim("w32", min=1, max=256)}
        torch.onnx.export(wrapper, (x,), str(path), input_names=["image"], output_names=names,
                          dynamic_shapes={"x": dims}, dynamo=True, verbose=False,
                          external_data=False)  # one file (else the weights go to "<tmp>.data")


def export_onnx(run: str | Path | Run, out: str | Path | None = None) -> tuple[Path, dict]:
    """Export the run's best weights to ONNX (in the run folder, or ``out``); raises when parity fails."""
    run = run if isinstance(run, Run) else Run(run)
    with run.writing("export"):
        return _export(run, out)


def _export(run: Run, out: str | Path | None) -> tuple[Path, dict]:
    model, cfg = load_model(run, torch.device("cpu"))
    path = Path(out) if out else run.onnx_path
    if path.is_dir():
        raise PneumoscopeError(f"--out {path}: is a folder; name the .onnx file to write")
    check_writable_folder(path.parent, "the export's folder")
    tmp = path.with_name(path.name + ".tmp.onnx")  # renamed into place once it passed the parity check
    size = cfg.data.size
    wrapper = _Exported(model).eval()
    names = ["prob", "cls"] if cfg.model.cls_head else ["prob"]
    try:
        _write_onnx(wrapper, torch.from_numpy(sample_inputs(size, 2)), tmp, names)
    except Exception as exc:  # the exporters raise many kinds
        tmp.unlink(missing_ok=True)
        raise PneumoscopeError(f"ONNX export failed: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
    ref = TorchBackend(model, torch.device("cpu"))
    onnx = OnnxBackend(tmp)
    checks = {f"{size}px": parity(ref, onnx, sample_inputs(size, 2)),
              f"{size + 32}px": parity(ref, onnx, sample_inputs(size + 32, 1, seed=7))}
    ok = all(c["max_abs_diff"] < PARITY_TOLERANCE and c["masks_equal"] for c in checks.values())
    report = {"path": str(path.resolve()), "tolerance": PARITY_TOLERANCE, "checks": checks, "passed": ok}
    if not ok:
        tmp.unlink(missing_ok=True)
        raise PneumoscopeError(f"ONNX parity check failed: {checks}")
    os.replace(tmp, path)
    if path.resolve() == run.onnx_path.resolve():
        run.write_export_report({**report, "sha256": file_sha256(path)})
    return path, report
