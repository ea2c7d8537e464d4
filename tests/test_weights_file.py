"""Local weights files for sites without internet (weights_file.py, and its two users: the stage-1
encoder and stage 2's DenseNet121): files torchvision itself writes load, each kind of wrong file
is one line, every file's SHA-256 is recorded."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pneumoscope.config import ModelConfig
from pneumoscope.errors import PneumoscopeError
from pneumoscope.files import file_sha256
from pneumoscope.stage1.unet import build_model
from pneumoscope.stage2.extractors import DenseNetPhi, build_extractor
from pneumoscope.weights_file import name_digest, read_weights


def _resnet18_state() -> dict:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(weights=None).state_dict()


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision ResNet18 state dict, saved as torchvision's hub files are, hash in the name."""
    folder = tmp_path_factory.mktemp("weights")
    tmp = folder / "resnet18.pth"
    torch.save(_resnet18_state(), tmp)
    named = folder / f"resnet18-{file_sha256(tmp)[:8]}.pth"
    tmp.rename(named)
    return named


def test_a_torchvision_file_loads_into_the_encoder_and_is_recorded(torchvision_resnet18: Path) -> None:
    model = build_model(ModelConfig(encoder="resnet18", encoder_weights=str(torchvision_resnet18)))
    record = model.initial_weights
    assert record["sha256"] == file_sha256(torchvision_resnet18)
    assert record["n_not_loaded"] == 0 and record["tensors_loaded"] == record["tensors_expected"]
    want = _resnet18_state()["layer4.1.conv2.weight"]
    assert torch.equal(model.encoder.layer4[1].conv2.weight.detach(), want)
    stem = _resnet18_state()["conv1.weight"].sum(dim=1, keepdim=True)  # RGB summed to one channel by smp
    assert torch.allclose(model.encoder.conv1.weight.detach(), stem)


def test_a_partial_file_names_what_did_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _resnet18_state()
    dropped = ["layer4.1.conv2.weight", "layer4.1.bn2.weight"]
    for key in dropped:
        state.pop(key)
    torch.save(state, tmp_path / "part.pt")
    model = build_model(ModelConfig(encoder="resnet18", encoder_weights=str(tmp_path / "part.pt")))
    assert set(model.initial_weights["not_loaded"]) == set(dropped)
    line = capsys.readouterr().out
    assert "not loaded" in line and all(k in line for k in dropped)


def _text(p: Path) -> None:
    p.write_text("root:x:0:0:root:/root:/bin/bash\n")


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _cut(p: Path) -> None:
    torch.save(_resnet18_state(), p)
    p.write_bytes(p.read_bytes()[:5000])


def _whole_model(p: Path) -> None:  # torch.save(model): a pickle of code, which weights_only refuses
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None), p)


def _list_of_tensors(p: Path) -> None:
    torch.save(list(_resnet18_state().values()), p)


def _json(p: Path) -> None:
    p.write_text(json.dumps({"conv1.weight": [1, 2, 3]}))


def _plain_pickle(p: Path) -> None:
    p.write_bytes(pickle.dumps({"a": 1}))


def _no_tensors(p: Path) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, p)


def _bad_safetensors(p: Path) -> None:
    p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")


def _another_network(p: Path) -> None:  # a valid state dict of a different architecture
    from torchvision.models import squeezenet1_0

    torch.save(squeezenet1_0(weights=None).state_dict(), p)


HOSTILE: list[tuple[str, Callable[[Path], None], str]] = [
    ("passwd.pt", _text, "not a weights file"),
    ("empty.pt", _empty, "not a weights file"),
    ("cut.pt", _cut, "not a weights file"),
    ("whole-model.pt", _whole_model, "not a weights file"),
    ("list.pt", _list_of_tensors, "holds no tensors by name"),
    ("weights.json", _json, "not a weights file"),
    ("pickle.pkl", _plain_pickle, "not a weights file"),
    ("checkpoint.pt", _no_tensors, "holds no tensors by name"),
    ("bad.safetensors", _bad_safetensors, "not a safetensors file"),
    ("squeezenet.pt", _another_network, "do not fit this encoder"),
    ("resnet18-0badc0de.pth", lambda p: torch.save(_resnet18_state(), p), "its name says 0badc0de"),
]


@pytest.mark.parametrize(("name", "write", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_wrong_file_is_one_line(tmp_path: Path, name: str, write: Callable[[Path], None], words: str) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(PneumoscopeError) as err:
        build_model(ModelConfig(encoder="resnet18", encoder_weights=str(path)))
    message = str(err.value)
    assert words in message and "\n" not in message and str(path) in message


def test_name_digest_reads_torchvision_names() -> None:
    assert name_digest(Path("densenet121-a639ec97.pth")) == "a639ec97"
    assert name_digest(Path("resnet34-b627a593.pth")) == "b627a593"
    assert name_digest(Path("my-weights.pt")) is None  # not hex
    assert name_digest(Path("enc.pt")) is None


def test_safetensors_files_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in _resnet18_state().items()}, str(tmp_path / "enc.safetensors"))
    wf = read_weights(tmp_path / "enc.safetensors", "test")
    assert "layer1.0.conv1.weight" in wf.state and wf.sha256 == file_sha256(tmp_path / "enc.safetensors")


@pytest.fixture(scope="module")
def densenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DenseNet121 weights as torchvision publishes them: the whole model's state dict, with the old
    "norm.1"-style layer names of its hub file, hash in the name."""
    from torchvision.models import densenet121

    torch.manual_seed(1)
    state = densenet121(weights=None).state_dict()
    old = {k.replace("norm1", "norm.1").replace("conv1", "conv.1").replace("norm2", "norm.2").replace("conv2", "conv.2")
           if "denselayer" in k else k: v for k, v in state.items()}
    folder = tmp_path_factory.mktemp("densenet")
    tmp = folder / "d.pth"
    torch.save(old, tmp)
    named = folder / f"densenet121-{file_sha256(tmp)[:8]}.pth"
    tmp.rename(named)
    return named


def test_a_local_densenet_file_gives_its_features(densenet_file: Path) -> None:
    from torchvision.models import densenet121

    torch.manual_seed(1)
    reference = densenet121(weights=None).features.eval()
    phi = DenseNetPhi(weights=str(densenet_file)).eval()
    assert phi.record["sha256"] == file_sha256(densenet_file)
    x = torch.rand(2, 1, 64, 64)
    want = torch.nn.functional.adaptive_avg_pool2d(torch.relu(reference(
        (x.expand(-1, 3, -1, -1) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))), 1).flatten(1)
    with torch.no_grad():
        assert torch.allclose(phi(x), want, atol=1e-5)
    _, note = build_extractor("auto", torch.nn.Identity(), str(densenet_file))
    assert "local file" in note and "DenseNet121" in note


def test_densenet_refuses_another_file(densenet_file: Path, torchvision_resnet18: Path) -> None:
    with pytest.raises(PneumoscopeError, match="not DenseNet121 weights") as err:
        DenseNetPhi(weights=str(torchvision_resnet18))
    assert "\n" not in str(err.value)
    with pytest.raises(PneumoscopeError, match="is not the file this classifier was fitted with"):
        DenseNetPhi(weights=str(densenet_file), expect_sha256="0" * 64)


@pytest.mark.slow
def test_stage2_with_a_local_densenet_file_end_to_end(densenet_file: Path, seg_run: Path, tiny_synth: Path,
                                                      tmp_path: Path) -> None:
    import shutil

    from pneumoscope.cli import main

    run = tmp_path / "run"
    shutil.copytree(seg_run, run)
    assert main(["train-cls", "--run", str(run), "--set", "stage2.n_iter=2", "--set", "stage2.cv_folds=2",
                 "--set", "stage2.feature_extractor=densenet121", "--set", f"stage2.densenet_weights={densenet_file}"]) == 0
    summary = json.loads((run / "stage2" / "stage2.json").read_text())
    assert summary["feature_weights"]["sha256"] == file_sha256(densenet_file)
    assert file_sha256(densenet_file) in (run / "MODEL_CARD.md").read_text()
    image = next(p for p in sorted(tiny_synth.rglob("*.png")) if "mask" not in str(p).lower())
    assert main(["predict", "--run", str(run), str(image), "--out", str(tmp_path / "p")]) == 0
    moved = tmp_path / "elsewhere.pth"
    densenet_file.rename(moved)  # the file the classifier was fitted with is gone: one line, not a traceback
    try:
        assert main(["predict", "--run", str(run), str(image), "--out", str(tmp_path / "q")]) != 0
    finally:
        moved.rename(densenet_file)


@pytest.mark.slow
def test_a_run_records_the_encoder_file_it_began_from(torchvision_resnet18: Path, tiny_synth: Path, tmp_path: Path) -> None:
    from tests.conftest import train_tiny_run

    run = train_tiny_run(tiny_synth, tmp_path / "run", "--set", f"model.encoder_weights={torchvision_resnet18}")
    record = json.loads((run / "metrics.json").read_text())["initial_weights"]
    assert record["sha256"] == file_sha256(torchvision_resnet18) and record["n_not_loaded"] == 0
    assert record["sha256"] in (run / "MODEL_CARD.md").read_text()
