"""pneumoscope: pneumothorax detection and segmentation in chest X-rays.

Stage 1 is a U-Net (segmentation-models-pytorch) trained with a composite
BCE + Dice + Focal loss; stage 2 classifies DenseNet features of the image and
of the predicted mask with a tuned XGBoost model.

The Python API::

    from pneumoscope import load_run
    model = load_run("runs/demo/seg/resnet18")
    result = model.predict("scan.dcm")   # .mask .prob .p_pneumothorax .decision .metadata
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["load_run", "Predictor", "Prediction", "PredictOptions", "Run", "PneumoscopeError", "PneumoscopeWarning",
           "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .errors import PneumoscopeError
    from .folders import Run
    from .inference.options import PredictOptions
    from .inference.predictor import PneumoscopeWarning, Prediction, Predictor, load_run

_LAZY = {"load_run": "inference.predictor", "Predictor": "inference.predictor", "Prediction": "inference.predictor",
         "PredictOptions": "inference.options", "Run": "runs", "PneumoscopeError": "errors",
         "PneumoscopeWarning": "inference.predictor"}


def __getattr__(name: str) -> Any:
    """Import the API on first use, so that ``import pneumoscope`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
