import numpy as np
import pandas as pd
import pytest
import torch

from pneumoscope import config
from pneumoscope.config import ModelConfig
from pneumoscope.errors import PneumoscopeError
from pneumoscope.folders import Run
from pneumoscope.inference import backend_choice
from pneumoscope.inference.backend_choice import Request
from pneumoscope.inference.backends import TorchBackend, with_hflip_tta
from pneumoscope.inference.export import sample_inputs
from pneumoscope.stage1.unet import build_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(encoder="resnet18", cls_head=True)).eval()


def _memo(folder, model):
    """A run folder holding ``model``'s weights: where backend choices are remembered."""
    run = Run(folder)
    run.save_weights(model.state_dict(), config.load("demo"), pd.DataFrame(), {})
    return run


def test_torch_backend_shapes_and_channels_last_matches(model):
    x = sample_inputs(64, 2)
    p, c = TorchBackend(model, torch.device("cpu"))(x)
    assert p.shape == (2, 64, 64) and c.shape == (2,) and ((p >= 0) & (p <= 1)).all()
    p2, _ = TorchBackend(model, torch.device("cpu"), channels_last=True)(x)
    assert np.abs(p - p2).max() < 1e-4


def test_fp16_on_cpu_is_refused(model):
    with pytest.raises(PneumoscopeError, match="fp16"):
        TorchBackend(model, torch.device("cpu"), "fp16")


def test_hflip_tta_averages_the_mirrored_prediction():
    w = np.linspace(-2, 2, 16, dtype=np.float32)  # an asymmetric "model"

    def fake(x):
        return 1 / (1 + np.exp(-(x[:, 0] * w))), x[:, 0, 0, :1].sum(1)

    x = np.random.default_rng(0).normal(size=(2, 1, 16, 16)).astype(np.float32)
    prob, cls = with_hflip_tta(fake, x)
    expect = (fake(x)[0] + fake(x[..., ::-1].copy())[0][..., ::-1]) / 2
    np.testing.assert_allclose(prob, expect, rtol=1e-6)
    assert cls.shape == (2,)


def test_a_forced_precision_without_a_record_falls_back_when_it_disagrees(model, monkeypatch, tmp_path):
    x = sample_inputs(64, 2)
    # On every CPU: bf16 forced (emulated where the CPU lacks it), no precision record, and its probe
    # check made impossible, so the fallback to float32 is what gets exercised.
    monkeypatch.setattr(backend_choice, "bf16_supported", lambda device: True)
    monkeypatch.setattr(backend_choice, "DICE_MIN", 1.01)
    chosen, notes = backend_choice.choose(model, x, Request(CPU, "torch", "bf16"), memo=_memo(tmp_path, model))
    assert chosen.precision == "fp32" and chosen.name == "torch-fp32"
    assert any("torch-bf16-cl does not match float32" in n and "not used" in n for n in notes)


def _record(accepted: bool) -> dict:
    return {"available": True, "max_drop": 0.005, "validation_images": 4,
            "precisions": {"bf16": {"accepted": accepted, "drop": {"dice_kaggle": 0.0}, "decision_flips": 0, "reason": "x"}}}


@pytest.mark.parametrize("accepted", [True, False])
def test_auto_offers_only_what_the_validation_images_accepted(model, monkeypatch, tmp_path, accepted):
    monkeypatch.setattr(backend_choice, "bf16_supported", lambda device: True)
    monkeypatch.setattr(backend_choice, "DICE_MIN", 1.01)  # the probe rule no longer decides an accepted precision
    names = [c.name for c, _ in backend_choice.candidates(model, Request(CPU, "torch", "auto", record=_record(accepted)))]
    assert ("torch-bf16-cl" in names) == accepted and "torch-fp32-cl" in names
    chosen, notes = backend_choice.choose(model, sample_inputs(64, 2), Request(CPU, "torch", "auto", record=_record(accepted)),
                                          memo=_memo(tmp_path, model))
    assert not any("does not match" in n for n in notes)


def test_auto_without_a_record_is_float32(model, monkeypatch):
    monkeypatch.setattr(backend_choice, "bf16_supported", lambda device: True)
    names = [c.name for c, _ in backend_choice.candidates(model, Request(CPU))]
    assert names == ["torch-fp32-cl"]


def test_eager_float32_is_chosen_when_nothing_else_qualifies(model, monkeypatch, tmp_path):
    monkeypatch.setattr(backend_choice, "FP32_TOLERANCE", 0.0)  # every other float32 path "differs"
    monkeypatch.setattr(backend_choice, "DICE_MIN", 1.01)
    chosen, notes = backend_choice.choose(model, sample_inputs(64, 2), Request(CPU), memo=_memo(tmp_path, model))
    assert chosen.name == "torch-fp32" and any("not used" in n for n in notes)
    again, notes = backend_choice.choose(model, sample_inputs(64, 2), Request(CPU), memo=_memo(tmp_path, model))
    assert again.name == "torch-fp32"


def test_choice_is_remembered_per_machine(model, tmp_path):
    x = sample_inputs(64, 2)
    memo = _memo(tmp_path, model)
    first, _ = backend_choice.choose(model, x, Request(CPU, "torch", "fp32"), memo=memo)
    again, notes = backend_choice.choose(model, x, Request(CPU, "torch", "fp32"), memo=memo)
    assert first.name == again.name and "remembered" in notes[0]


def _int8_record(*runtimes: str, refused: tuple[str, ...] = ()) -> dict:
    entries = {("int8" if i == 0 else f"int8-{name.split('-')[0]}"): {"accepted": name not in refused, "backend": name}
               for i, name in enumerate(runtimes)}
    return {"available": True, "max_drop": 0.005, "validation_images": 4, "precisions": entries}


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """``model`` exported to ONNX (float32): the file both ONNX Runtime and OpenVINO run."""
    pytest.importorskip("onnxruntime")
    from pneumoscope.inference.export import _Exported, _write_onnx

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    _write_onnx(_Exported(model).eval(), torch.from_numpy(sample_inputs(64, 2)), path, ["prob", "cls"])
    return path


BOTH = ("openvino-int8", "onnx-int8")


@pytest.mark.parametrize("backend, precision, record, expect", [
    ("openvino", "auto", _int8_record(*BOTH), ["openvino-int8", "openvino-fp32"]),
    ("onnx", "auto", _int8_record(*BOTH), ["onnx-int8", "onnx-fp32"]),
    ("onnx", "auto", _int8_record("openvino-int8"), ["onnx-fp32"]),  # judged on OpenVINO only: not offered on ONNX Runtime
    ("auto", "auto", _int8_record(*BOTH), ["torch-fp32-cl", "openvino-int8", "onnx-int8", "openvino-fp32", "onnx-fp32"]),
    ("auto", "auto", _int8_record(*BOTH, refused=("openvino-int8",)),  # one runtime flipped a decision, the other not
     ["torch-fp32-cl", "onnx-int8", "openvino-fp32", "onnx-fp32"]),
    ("auto", "int8", _int8_record(*BOTH, refused=BOTH), ["openvino-int8", "onnx-int8"]),  # forced: judged, not accepted
    ("torch", "auto", _int8_record(*BOTH), ["torch-fp32-cl"]),
])
def test_int8_is_offered_only_on_a_runtime_that_was_judged(model, exported, monkeypatch, backend, precision, record, expect):
    pytest.importorskip("openvino")
    monkeypatch.setattr(backend_choice, "bf16_supported", lambda device: False)
    names = [c.name for c, _ in backend_choice.candidates(model, Request(CPU, backend, precision, onnx_path=exported, int8_path=exported,
                                                                  record=record))]
    assert names == expect


def test_a_remembered_int8_of_another_runtime_is_chosen_again(model, exported, monkeypatch, tmp_path):
    pytest.importorskip("openvino")
    monkeypatch.setattr(backend_choice, "bf16_supported", lambda device: False)
    memo = _memo(tmp_path, model)
    x = sample_inputs(64, 2)
    first, _ = backend_choice.choose(model, x, Request(CPU, "auto", "int8", onnx_path=exported, int8_path=exported,
                                                       record=_int8_record("onnx-int8")), memo=memo)
    assert first.name == "onnx-int8"
    (key, entry), = ((k, v) for k, v in memo.read_backend_memo().items() if k != "weights_id")
    memo.write_backend_memo({key.replace("+onnx-int8", "+openvino-int8"): entry})  # a memo of another record
    again, notes = backend_choice.choose(model, x, Request(CPU, "auto", "int8", onnx_path=exported, int8_path=exported,
                                                           record=_int8_record("openvino-int8")), memo=memo)
    assert again.name == "openvino-int8" and "onnx-int8 is not an int8 runtime judged; choosing again" in notes
