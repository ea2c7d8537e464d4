import json

import numpy as np
import pytest

from pneumoscope.cli import main
from pneumoscope.inference.backends import OnnxBackend, TorchBackend
from pneumoscope.inference.export import sample_inputs
from pneumoscope.runs import Run
from pneumoscope.stage1.unet import load_model

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_export_with_parity_and_dynamic_shapes(head_run, capsys, tmp_path):
    assert main(["export", "--run", str(head_run), "--format", "onnx"]) == 0
    assert "masks equal" in capsys.readouterr().out
    assert not [p.name for p in head_run.iterdir() if p.name.startswith("model.onnx") and p.name != "model.onnx"]
    alone = tmp_path / "copied.onnx"  # self-contained: no weights file beside it
    alone.write_bytes((head_run / "model.onnx").read_bytes())
    assert OnnxBackend(alone)(sample_inputs(64, 1))[0].shape == (1, 64, 64)
    report = json.loads((head_run / "export.json").read_text())
    assert report["passed"] and all(c["max_abs_diff"] < 1e-4 for c in report["checks"].values())
    import torch

    model, _ = load_model(Run(head_run), torch.device("cpu"))
    onnx, ref = OnnxBackend(head_run / "model.onnx"), TorchBackend(model, torch.device("cpu"))
    for size, n in ((64, 1), (96, 5), (128, 2)):  # batch and image size are dynamic
        x = sample_inputs(size, n)
        (po, co), (pt, ct) = onnx(x), ref(x)
        assert po.shape == (n, size, size) and np.abs(po - pt).max() < 1e-4 and np.abs(co - ct).max() < 1e-4
