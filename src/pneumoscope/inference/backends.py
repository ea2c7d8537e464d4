"""Inference backends for the stage-1 U-Net: PyTorch (float32 or bf16/fp16), ONNX Runtime and OpenVINO.

A backend maps standardised images (N, 1, S, S) float32 to probability maps (N, S, S)
and the classification head's logits (N,) when the model has a head.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import PneumoscopeError, one_line
from ..stage1.engine import split_output
from .options import PRECISIONS


def bf16_supported(device: torch.device) -> bool:
    """Whether this device runs bf16 convolutions natively (CPU: AVX512-BF16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchBackend:
    """Eager PyTorch; optionally channels_last, reduced precision and ``torch.compile``."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32", channels_last: bool = False,
                 compile: bool = False) -> None:
        if precision not in PRECISIONS:
            raise PneumoscopeError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise PneumoscopeError("fp16 inference needs CUDA; on CPU use bf16")
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.model = model.eval().to(device)
        if channels_last:  # a copy: the eager float32 reference keeps its own layout
            self.model = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if compile else self.model
        self.name = f"torch-{precision}" + ("-cl" if channels_last else "") + ("-compiled" if compile else "")

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits, cls_logit = split_output(self.net(t))
        prob = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        return prob, (cls_logit.float().view(-1).cpu().numpy() if cls_logit is not None else None)


class OnnxBackend:
    """ONNX Runtime session of an exported model (CUDA provider when available)."""

    def __init__(self, path: str | Path, threads: int | None = None, name: str = "onnx-fp32") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise PneumoscopeError("the onnx backend needs onnxruntime (pip install onnxruntime)") from exc
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for a damaged or foreign file
            first = one_line(exc)[:160]
            raise PneumoscopeError(f"{path}: not an ONNX model that ONNX Runtime loads ({first}); delete it "
                                   "(it is exported again when needed) or run pneumoscope export") from exc
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.name = name

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})
        cls = out[1].reshape(-1) if len(out) > 1 else None
        return out[0][:, 0], cls


class OpenVinoBackend:
    """OpenVINO (CPU) compiled from an exported ONNX model, float32 or the int8 QDQ model.

    Computation is held to the file's own precision (``INFERENCE_PRECISION_HINT`` f32): OpenVINO would
    otherwise run a float32 model in bf16 on CPUs that have it, a reduced precision nobody judged. Its
    kernels follow ``ONEDNN_MAX_CPU_ISA`` (it is built on oneDNN), unlike ONNX Runtime's, which is what
    lets an AVX2-only CPU be emulated here. One inference request, used under a lock."""

    def __init__(self, path: str | Path, threads: int | None = None, name: str = "openvino-fp32") -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise PneumoscopeError("the openvino backend needs openvino (pip install openvino)") from exc
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own for a damaged file
            first = one_line(exc)[:160]
            raise PneumoscopeError(f"{path}: not an ONNX model that OpenVINO compiles ({first}); delete it "
                                   "(it is exported again when needed) or run pneumoscope export") from exc
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()
        self.name = name

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with self.lock:  # an infer request is not thread-safe; its output buffers are reused: copied
            result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            out = [np.array(result[o]) for o in self.compiled.outputs]
        cls = out[1].reshape(-1) if len(out) > 1 else None
        return out[0][:, 0], cls


def openvino_available() -> bool:
    """Whether OpenVINO imports here (a dependency, but not every platform has wheels)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def with_hflip_tta(backend, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Average of the backend's output on ``x`` and on its mirror image (flipped back)."""
    p1, c1 = backend(x)
    p2, c2 = backend(x[..., ::-1].copy())
    prob = (p1 + p2[..., ::-1]) / 2
    return prob, (None if c1 is None else (c1 + c2) / 2)
