"""Local pretrained-weights files, for sites without internet: read, verified, and described.

A weights file is a PyTorch state dict (``torch.save(model.state_dict(), PATH)``, read with
``weights_only=True``, so a pickle cannot run code) or a safetensors file. A file named the way
torchvision and the torch hub name theirs (``densenet121-a639ec97.pth``: the first hex digits of
its SHA-256 after the last dash) is checked against that prefix before use, as torch's own
``check_hash`` does for a download. Every file's SHA-256 is recorded where it was used (the run's
metrics and model card; stage 2's summary), so that a result names the exact weights it began from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import PneumoscopeError, one_line
from .files import file_sha256

# torch.hub's HASH_REGEX: a name ending in "-<hex digits>.<ext>" carries the start of its sha256
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
_SHOWN_KEYS = 5


@dataclass(frozen=True)
class WeightsFile:
    """A state dict read from ``path``, with the file's SHA-256."""

    path: Path
    state: dict
    sha256: str

    def record(self, loaded: int, of: int, not_loaded: list[str]) -> dict:
        """What a run keeps about this file: where, which bytes, and how much of it was used."""
        return {"path": str(self.path), "sha256": self.sha256, "tensors_loaded": loaded, "tensors_expected": of,
                "not_loaded": not_loaded[:50], "n_not_loaded": len(not_loaded)}


def name_digest(path: Path) -> str | None:
    """The SHA-256 prefix a torchvision-style file name carries (``name-<hex>.pth``), else None."""
    m = _HASH_IN_NAME.search(path.name)
    return m.group(1) if m and len(m.group(1)) >= 6 else None


def read_weights(path: str | Path, what: str) -> WeightsFile:
    """Read the state dict in ``path`` (``what`` names its use in messages), verified by its name's digest.

    Raises PneumoscopeError with one line for a missing file, a file that is not a state dict (a
    text file, a pickled model, a damaged download) and a file whose SHA-256 its name contradicts."""
    p = Path(path)
    if not p.is_file():
        raise PneumoscopeError(f"{what}: {p} is not a file")
    digest = file_sha256(p)
    expected = name_digest(p)
    if expected is not None and not digest.startswith(expected):
        raise PneumoscopeError(f"{what}: {p}: its SHA-256 begins {digest[:len(expected)]}, its name says {expected}: "
                               "the file is damaged or not the one its name claims (download it again)")
    state = _read_state(p, what)
    return WeightsFile(p, state, digest)


def _read_state(p: Path, what: str) -> dict:
    import torch

    remedy = "expected a PyTorch state dict (torch.save(model.state_dict(), PATH)) or a safetensors file"
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(p))
        except Exception as exc:  # safetensors raises its own error types
            raise PneumoscopeError(f"{what}: {p}: not a safetensors file ({one_line(exc)}); {remedy}") from exc
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # a text file, a pickle of a whole model, a cut download: torch's errors vary
            raise PneumoscopeError(f"{what}: {p}: not a weights file ({exc.__class__.__name__}); {remedy}") from exc
    for wrapper in ("state_dict", "model"):  # training checkpoints often keep the weights under one of these
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PneumoscopeError(f"{what}: {p}: holds no tensors by name; {remedy}")
    return state


def keys_line(keys: list[str]) -> str:
    """A few of ``keys`` and how many more, for one line."""
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (and {len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")
