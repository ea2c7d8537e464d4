"""Choose the inference backend on this machine: fastest among those that match float32.

Candidates: PyTorch float32 (channels_last), PyTorch bf16/fp16 autocast (channels_last;
where the hardware supports it) and ONNX Runtime (exported with a parity check). Each is
timed on a probe batch of the real inputs and compared with eager float32 PyTorch:
float32 paths must agree within 1e-4 with equal masks; reduced precision must reach mask
Dice >= 0.995 on every probe image, or it is dropped and the reason said. The choice is
remembered per machine in the run folder and re-verified on each call's probe batch.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import PneumoscopeError
from ..runs import Run
from ..stage1.metrics import per_image_dice
from .backends import OnnxBackend, TorchBackend, bf16_supported

DICE_MIN = 0.995
FP32_TOLERANCE = 1e-4


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: torch.device) -> str:
    """What the speed ranking depends on: processor or GPU, torch version."""
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return f"{device.type}|{what}|torch {torch.__version__}"


def _median_ms(backend, x: np.ndarray, repeats: int = 2) -> float:
    backend(x)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        backend(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000 / len(x)


def verify(candidate, reduced: bool, ref_prob: np.ndarray, x: np.ndarray) -> tuple[bool, str]:
    """Does ``candidate`` reproduce float32 on ``x``? Returns (ok, what was measured)."""
    prob, _ = candidate(x)
    if reduced:
        dice = per_image_dice(prob > 0.5, ref_prob > 0.5)
        return bool(dice.min() >= DICE_MIN), f"min mask Dice {dice.min():.4f}"
    diff = float(np.abs(prob - ref_prob).max())
    same = bool(((prob > 0.5) == (ref_prob > 0.5)).all())
    return diff < FP32_TOLERANCE and same, f"max |diff| {diff:.2e}, masks {'equal' if same else 'differ'}"


def candidates(model: nn.Module, device: torch.device, backend: str, precision: str, compile: bool,
               onnx_path: Path | None) -> list[tuple[object, bool]]:
    """(backend, is_reduced_precision) pairs for the request, preferred first."""
    out: list[tuple[object, bool]] = []
    if backend in ("auto", "torch"):
        reduced = "bf16" if (device.type == "cpu" or bf16_supported(device)) else "fp16"
        if precision in ("auto", "bf16", "fp16") and (precision != "auto" or bf16_supported(device) or device.type == "cuda"):
            out.append((TorchBackend(model, device, reduced if precision == "auto" else precision, True, compile), True))
        if precision in ("auto", "fp32"):
            out.append((TorchBackend(model, device, "fp32", True, compile), False))
    if backend in ("auto", "onnx") and onnx_path is not None:
        out.append((OnnxBackend(onnx_path), False))
    if not out:
        raise PneumoscopeError(f"no {backend} backend with precision {precision} on {device.type}")
    return out


def choose(model: nn.Module, device: torch.device, x: np.ndarray, backend: str = "auto", precision: str = "auto",
           compile: bool = False, onnx_path: Path | None = None, memo: Run | None = None) -> tuple[object, list[str]]:
    """The backend to use and lines saying what was measured or why something fell back.

    ``memo``: the run whose remembered choices are read and updated (None: nothing remembered)."""
    ref = TorchBackend(model, device, "fp32", False)
    ref_prob, _ = ref(x)
    cands = candidates(model, device, backend, precision, compile, onnx_path)
    key = f"{machine_key(device)}|{backend}|{precision}|compile={compile}"
    known = memo.read_backend_memo() if memo is not None else {}
    notes: list[str] = []
    if key in known:  # re-verify the remembered choice only
        remembered = known[key]["backend"]
        cands = sorted(cands, key=lambda c: c[0].name != remembered)  # the remembered one first
        for cand, reduced in cands:
            ok, how = verify(cand, reduced, ref_prob, x)
            if ok:
                return cand, [f"backend {cand.name} (remembered for this machine; {how})"]
            notes.append(f"{cand.name} rejected on this batch ({how}); falling back")
    timings = {}
    passing = []
    for cand, reduced in cands:
        ok, how = verify(cand, reduced, ref_prob, x)
        if not ok:
            notes.append(f"{cand.name} does not match float32 ({how}); falling back")
            continue
        timings[cand.name] = _median_ms(cand, x)
        passing.append(cand)
    if not passing:
        raise PneumoscopeError("no backend matched float32 PyTorch on the probe batch: " + "; ".join(notes))
    if backend == "auto":
        best = min(passing, key=lambda c: timings[c.name])
    else:
        best = passing[0]
    notes.append(f"backend {best.name}: " + ", ".join(f"{k} {v:.1f} ms/img" for k, v in timings.items()))
    if memo is not None:
        known[key] = {"backend": best.name, "ms_per_image": timings}
        try:
            memo.write_backend_memo(known)
        except OSError as exc:  # a read-only run folder: choose again next time
            notes.append(f"backend choice not remembered ({exc.strerror})")
    return best, notes
