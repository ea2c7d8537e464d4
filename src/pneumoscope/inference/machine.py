"""The kind of machine this process computes on: what a precision record (:mod:`.precision`) and a
remembered backend choice (:mod:`.backend_choice`) are keyed by, since reduced precision rounds, and backends
rank, differently on each (CPU vector features, any limit put on them, the GPU, the runtimes).
"""

from __future__ import annotations

import os
import platform

import torch

# CPU features that change how reduced precision rounds (which kernels oneDNN, OpenVINO, ONNX Runtime pick)
ARITHMETIC_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                    "amx_int8", "amx_fp16")
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
ISA_VALUES = {  # what oneDNN and PyTorch accept (any case); anything else they ignore, and so does the machine key
    "ONEDNN_MAX_CPU_ISA": {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                           "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                           "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
                           "DEFAULT", "ALL"},
    "ATEN_CPU_CAPABILITY": {"DEFAULT", "AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX", "VSX", "ZVECTOR", "SVE256"},
}


def isa_limits() -> str:
    """Limits put on the instruction set this process uses (" ONEDNN_MAX_CPU_ISA=AVX2 ..."; "" for
    none): an emulated AVX2 machine is another machine for both speed and rounding. A value the
    libraries do not know is left out (they ignore it: the machine is what it is; :func:`isa_notes`)."""
    return "".join(f" {k}={os.environ[k].strip().upper()}" for k in ISA_LIMITS
                   if os.environ.get(k, "").strip() and os.environ[k].strip().upper() in ISA_VALUES[k])


def isa_notes() -> list[str]:
    """One line for each instruction-set limit whose value the libraries do not know."""
    return [f"{k}={os.environ[k]!r} is not a value oneDNN/PyTorch know ({', '.join(sorted(ISA_VALUES[k]))}): ignored, "
            "as they ignore it" for k in ISA_LIMITS
            if os.environ.get(k, "").strip() and os.environ[k].strip().upper() not in ISA_VALUES[k]]


def arithmetic(device: torch.device) -> str:
    """What reduced precision's results depend on here: the GPU, or the CPU's vector features and
    any limit put on them, and the runtimes' versions. A precision record holds for one of these."""
    from importlib.metadata import PackageNotFoundError, version

    if device.type == "cuda":
        what = f"cuda {torch.cuda.get_device_name(device)}"
    else:
        flags: set[str] = set()
        try:
            with open("/proc/cpuinfo") as fh:
                flags = set(next((ln for ln in fh if ln.startswith("flags")), ":").split(":", 1)[1].split())
        except OSError:
            pass
        what = "cpu " + "+".join(f for f in ARITHMETIC_FLAGS if f in flags) + isa_limits()
    versions = []
    for pkg in ("torch", "onnxruntime", "openvino"):
        try:
            versions.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return "; ".join([what, *versions])


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
    """What the speed ranking depends on: processor or GPU (with any limit put on its instruction
    set, as an AVX2 emulation does), torch version."""
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return f"{device.type}|{what}{isa_limits()}|torch {torch.__version__}"
