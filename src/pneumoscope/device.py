"""The one place that decides which torch device a command runs on."""

from __future__ import annotations

import torch

from .errors import PneumoscopeError


def resolve_device(request: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """The device for ``request``: ``auto`` (CUDA when present, this process's GPU under torchrun,
    else CPU), ``cpu``, ``cuda`` or ``cuda:N``. Raises PneumoscopeError for a device that is not here."""
    if isinstance(request, torch.device):
        return request
    want = (request or "auto").strip().lower()
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cpu":
        return torch.device("cpu")
    if want == "cuda" or want.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PneumoscopeError(f"device {request!r} asked for, but no CUDA GPU is available here; use --device cpu")
        n = torch.cuda.device_count()
        if want == "cuda":
            return torch.device("cuda", local_rank % n)
        try:
            index = int(want.split(":", 1)[1])
        except ValueError as exc:
            raise PneumoscopeError(f"unknown device {request!r}; use auto, cpu, cuda or cuda:N") from exc
        if not 0 <= index < n:
            raise PneumoscopeError(f"device {request!r}: only {n} CUDA device(s) here")
        return torch.device("cuda", index)
    raise PneumoscopeError(f"unknown device {request!r}; use auto, cpu, cuda or cuda:N")
