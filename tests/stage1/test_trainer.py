import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from pneumoscope import config
from pneumoscope.stage1.pipeline import train_seg
from tests.helpers import free_port


def _cfg(data, cache_dir, **train):
    sets = [f"data.path={data}", f"data.cache_dir={cache_dir}", "data.size=64", "model.encoder=resnet18",
            "train.batch_size=8", "train.progress=false", "data.val_fraction=0.25", "data.test_fraction=0.25",
            "train.schedule=plateau", "train.warmup_epochs=0"]  # the paper's schedule; tests switch the rest on
    sets += [f"train.{k}={v}" for k, v in train.items()]
    return config.load("demo", sets)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.slow
def test_resume_reaches_the_same_result(tiny_synth, cache_dir, tmp_path):
    full = train_seg(_cfg(tiny_synth, cache_dir, epochs=3), tmp_path / "full")
    train_seg(_cfg(tiny_synth, cache_dir, epochs=2), tmp_path / "cut")
    resumed = train_seg(_cfg(tiny_synth, cache_dir, epochs=3), tmp_path / "cut", resume=True)
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = pd.read_csv(tmp_path / "full" / "history.csv").drop(columns="seconds")
    hb = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb)
    assert full == resumed
    for name in ("config.yaml", "split.csv", "best.safetensors", "metrics.json"):
        assert (tmp_path / "full" / name).is_file()


@pytest.mark.slow
def test_early_stopping_when_validation_loss_stops_improving(tiny_synth, cache_dir, tmp_path, monkeypatch):
    from pneumoscope.stage1 import trainer

    real, losses = trainer.evaluate, iter([1.0, 1.1, 1.2, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01])

    def rising(*args, **kwargs):  # the real validation, its loss replaced by a sequence that stops improving
        acc, loss = real(*args, **kwargs), next(losses)
        compute = acc.compute
        acc.compute = lambda: {**compute(), "loss": loss}
        return acc

    monkeypatch.setattr(trainer, "evaluate", rising)
    m = train_seg(_cfg(tiny_synth, cache_dir, epochs=10, early_stopping_patience=2), tmp_path / "r")
    hist = pd.read_csv(tmp_path / "r" / "history.csv")
    assert len(hist) == 3 and m["epochs_run"] == 3 and m["best_epoch"] == 1


@pytest.mark.slow
def test_plateau_halves_the_learning_rate(tiny_synth, cache_dir, tmp_path):
    train_seg(_cfg(tiny_synth, cache_dir, epochs=5, lr=1e-3, plateau_patience=0, early_stopping_patience=10), tmp_path / "r")
    hist = pd.read_csv(tmp_path / "r" / "history.csv")
    best = float("inf")
    for prev_lr, row in zip([1e-3] + hist.lr.tolist()[:-1], hist.itertuples()):
        improved = row.val_loss < best * (1 - 1e-4)  # torch's default relative threshold
        best = min(best, row.val_loss)
        assert row.lr == pytest.approx(prev_lr if improved else prev_lr * 0.5)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_synth, cache_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "pneumoscope", "train-seg", "--data", str(tiny_synth),
           "--size", "64", "--epochs", "2", "--batch-size", "4", "--encoder", "resnet18", "--out", str(tmp_path / "ddp"),
           "--set", f"data.cache_dir={cache_dir}", "--set", "train.progress=false",
           "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    hist = pd.read_csv(tmp_path / "ddp" / "history.csv")
    assert len(hist) == 2 and hist.val_loss.notna().all()
    assert (tmp_path / "ddp" / "metrics.json").is_file()


@pytest.mark.slow
def test_retraining_clears_artefacts_of_the_old_weights(tiny_synth, cache_dir, tmp_path):
    run = tmp_path / "r"
    train_seg(_cfg(tiny_synth, cache_dir, epochs=1), run)
    (run / "model.onnx").write_bytes(b"stale")
    (run / "stage2").mkdir()
    (run / "stage2" / "classifier.joblib").write_bytes(b"stale")
    train_seg(_cfg(tiny_synth, cache_dir, epochs=1), run)
    assert not (run / "model.onnx").exists() and not (run / "stage2").exists()
    assert (run / "postprocess.json").is_file()  # searched again for the new weights


@pytest.mark.slow
def test_ema_and_best_k_average_are_what_is_saved(tiny_synth, cache_dir, tmp_path):
    m = train_seg(_cfg(tiny_synth, cache_dir, epochs=3, ema_decay=0.9, average_best=2), tmp_path / "r")
    assert m["averaged"]["epochs"] and len(m["averaged"]["epochs"]) == 2 and "kept" in m["averaged"]
    ck = torch.load(tmp_path / "r" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["ema"]["updates"] > 0 and len(ck["best_k"]["states"]) == 2


@pytest.mark.slow
def test_resume_with_ema_and_a_warm_cosine_schedule_reaches_the_same_result(tiny_synth, cache_dir, tmp_path, monkeypatch):
    from pneumoscope.folders import Run

    extra = {"ema_decay": 0.9, "schedule": "cosine", "warmup_epochs": 1, "grad_clip": 1.0, "batch_size": 4}
    train_seg(_cfg(tiny_synth, cache_dir, epochs=3, **extra), tmp_path / "full")

    class Killed(Exception):
        pass

    original = Run.write_history

    def die_after_epoch_2(self, fields, rows):
        original(self, fields, rows)
        if len(rows) == 2:
            raise Killed  # the process dies once epoch 2 is saved

    with monkeypatch.context() as m:
        m.setattr(Run, "write_history", die_after_epoch_2)
        with pytest.raises(Killed):
            train_seg(_cfg(tiny_synth, cache_dir, epochs=3, **extra), tmp_path / "cut")
    train_seg(_cfg(tiny_synth, cache_dir, epochs=3, **extra), tmp_path / "cut", resume=True)
    full = torch.load(tmp_path / "full" / "last.pt", map_location="cpu", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "last.pt", map_location="cpu", weights_only=True)
    assert full["scheduler"]["step_count"] == cut["scheduler"]["step_count"] == 9  # 3 steps an epoch: lr varied per step
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    assert all(torch.equal(full["ema"]["model"][k], cut["ema"]["model"][k]) for k in full["ema"]["model"])


def test_positive_fraction_schedule():
    from pneumoscope.stage1.trainer import _positive_fraction

    cfg = config.load("demo", ["train.epochs=5", "data.positive_fraction=0.8", "data.positive_fraction_end=0.4"])
    assert [round(_positive_fraction(cfg, e), 3) for e in range(1, 6)] == [0.8, 0.7, 0.6, 0.5, 0.4]
    assert _positive_fraction(config.load("demo"), 3) is None


@pytest.mark.slow
def test_two_phase_continues_at_a_larger_size_with_the_encoder_frozen(tiny_synth, cache_dir, tmp_path):
    from pneumoscope.cli import main
    from pneumoscope.folders import Run

    first = tmp_path / "first"
    train_seg(_cfg(tiny_synth, cache_dir, epochs=1), first)
    second = tmp_path / "second"
    assert main(["train-seg", "--config", "demo", "--data", str(tiny_synth), "--out", str(second), "--init-from", str(first), "--size", "96",
                 "--freeze-encoder-epochs", "1", "--epochs", "1", "--encoder", "resnet18", "--batch-size", "8",
                 "--set", f"data.cache_dir={cache_dir}", "--set", "train.progress=false",
                 "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25"]) == 0
    old, _ = Run(first).load_weights()
    new, cfg = Run(second).load_weights()
    enc = [k for k in old if k.startswith("encoder.") and "running" not in k and "num_batches" not in k]
    dec = [k for k in old if k.startswith("decoder.") and k.endswith("weight")]
    assert all(torch.equal(old[k], new[k]) for k in enc)  # frozen for its only epoch (BatchNorm statistics too)
    assert not all(torch.equal(old[k], new[k]) for k in dec)
    assert cfg["data"]["size"] == 96
    pd.testing.assert_frame_equal(Run(first).read_split(), Run(second).read_split())  # the same held-out images


@pytest.mark.slow
def test_normals_of_a_labelled_folder_are_negatives(tiny_synth, cache_dir, tmp_path):
    from pneumoscope.folders import Run
    from pneumoscope.stage2.pipeline import classification_sets
    from tests.helpers import labelled_folder

    images = sorted((tiny_synth / "png_images").glob("*.png"))[:12]
    labelled = labelled_folder(tmp_path / "labelled", images, ["pneumothorax"] * 4 + ["normal"] * 8,
                               [f"pat{i // 2}" for i in range(12)])
    cfg = _cfg(tiny_synth, cache_dir, epochs=1)
    import dataclasses

    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, extra_paths=(str(labelled),)))
    m = train_seg(cfg, tmp_path / "r")
    split = Run(tmp_path / "r").read_split()
    assert set(split.source) == {tiny_synth.name, "labelled"}
    ours = split[split.source == "labelled"]
    assert len(ours) == 8 and (ours.label == 0).all()  # the 8 normals, not the 4 pneumothorax without masks
    assert ours.groupby("patient_id").split.nunique().max() == 1  # patients stay together
    counts = pd.DataFrame(m["split_counts"])
    assert counts.set_index(["source", "kind"]).sum(axis=1)[("labelled", "normal")] == 8
    cache, fit, test, note = classification_sets(Run(tmp_path / "r").read_config(), Run(tmp_path / "r"))
    used = set(cache.index.id.iloc[np.concatenate([fit, test])])
    assert {"n0", "n1", "n2", "n3"} <= used and "4 labelled images without a mask" in note
    # evaluate-seg without --data judges the run's own test split, although its unmasked images are in no split
    from pneumoscope.stage1.pipeline import evaluate_seg

    again = evaluate_seg(tmp_path / "r")
    assert again["split"] == "test" and again["n_images"] == m["n_images"] and again["path"].endswith("metrics.json")
    assert again["dice_pos"] == pytest.approx(m["dice_pos"])


def test_channels_last_on_cpu_is_the_same_float32_computation():
    """`train.channels_last` (default on, also on CPU) changes the memory layout only: the same
    batch gives the same loss and gradients within float32 rounding, and the weights of a
    channels-last model load into a plain one."""
    from pneumoscope.stage1.engine import to_device
    from pneumoscope.stage1.losses import CompositeLoss
    from pneumoscope.stage1.unet import build_model

    cfg = config.load("demo", ["model.encoder=resnet18"])
    torch.manual_seed(0)
    plain = build_model(cfg.model)
    nhwc = build_model(cfg.model)
    nhwc.load_state_dict(plain.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    batch = {"image": torch.from_numpy(rng.standard_normal((4, 1, 64, 64), dtype=np.float32)),
             "mask": torch.from_numpy((rng.random((4, 1, 64, 64)) > 0.9).astype(np.float32)), "label": torch.ones(4)}
    loss_fn = CompositeLoss(cfg.loss)
    grads = []
    for model, cl in ((plain, False), (nhwc, True)):
        x, y, label = to_device(batch, torch.device("cpu"), cl)
        assert x.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        loss, _ = loss_fn(model(x), y, None, label)
        loss.backward()
        grads.append((loss.item(), model.encoder.conv1.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    g0, g1 = grads[0][1], grads[1][1]  # first layer: summation order differs through 20 layers and BatchNorm
    assert float((g0 - g1).norm() / g0.norm()) < 0.02
    fresh = build_model(cfg.model)
    fresh.load_state_dict(nhwc.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), nhwc.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [True, False])
def test_the_trainer_uses_the_layout_the_config_asks_for_on_cpu(tiny_synth, cache_dir, tmp_path, monkeypatch, channels_last):
    from pneumoscope.stage1 import trainer, unet

    built = []

    def spy(cfg):
        built.append(unet.build_model(cfg))
        return built[-1]

    monkeypatch.setattr(trainer, "build_model", spy)
    train_seg(_cfg(tiny_synth, cache_dir, epochs=1, channels_last=str(channels_last).lower()), tmp_path / "run")
    weight = built[0].encoder.layer1[0].conv1.weight  # 64 -> 64 channels: the two layouts differ
    assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_no_stop_and_no_best_checkpoint_before_min_epochs(tiny_synth, cache_dir, tmp_path):
    m = train_seg(_cfg(tiny_synth, cache_dir, epochs=3, min_epochs=3, early_stopping_patience=1), tmp_path / "r")
    assert m["epochs_run"] == 3 and m["best_epoch"] == 3  # epochs 1 and 2 were never candidates
    m = train_seg(_cfg(tiny_synth, cache_dir, epochs=2, min_epochs=10), tmp_path / "r2")  # more than planned: the last
    assert m["epochs_run"] == 2 and m["best_epoch"] == 2
