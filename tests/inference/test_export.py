import json

import numpy as np
import pytest

from pneumoscope.cli import main
from pneumoscope.folders import Run
from pneumoscope.inference.backends import OnnxBackend, OpenVinoBackend, TorchBackend
from pneumoscope.inference.export import sample_inputs
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


@pytest.mark.parametrize("runtime", [OnnxBackend, OpenVinoBackend])
def test_both_runtimes_run_the_export_as_float32_at_any_batch_and_size(trained_run, runtime):
    """OpenVINO would run a float32 model in bf16 on a CPU that has it: held to float32, it matches
    PyTorch as ONNX Runtime does, at every batch and image size (the graph's axes are dynamic)."""
    pytest.importorskip(runtime.__module__.split(".")[0] if runtime is OnnxBackend else "openvino")
    import torch

    run = Run(trained_run)
    path = run.current_onnx()
    if path is None:
        from pneumoscope.inference.export import export_onnx

        path, _ = export_onnx(run)
    model, _ = load_model(run, torch.device("cpu"))
    backend, ref = runtime(path, threads=1), TorchBackend(model, torch.device("cpu"))
    for size, n in ((64, 1), (96, 3)):
        x = sample_inputs(size, n)
        (pb, cb), (pt, ct) = backend(x), ref(x)
        assert pb.shape == (n, size, size) and np.abs(pb - pt).max() < 1e-4
        assert (cb is None) == (ct is None)


@pytest.mark.parametrize("content", [b"", b"not an onnx model", b"\x08\x07" * 50])
def test_a_damaged_model_file_is_one_line_for_openvino(tmp_path, content):
    pytest.importorskip("openvino")
    from pneumoscope.errors import PneumoscopeError

    bad = tmp_path / "model.onnx"
    bad.write_bytes(content)
    with pytest.raises(PneumoscopeError, match="not an ONNX model that OpenVINO compiles") as info:
        OpenVinoBackend(bad)
    assert "\n" not in str(info.value)
