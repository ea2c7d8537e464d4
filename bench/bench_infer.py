"""Inference benchmark: ms per 512x512 image for the ResNet34 U-Net on every backend and precision.

    .venv/bin/python bench/bench_infer.py [--run RUN] [--images 8] [--repeats 5]

Without ``--run`` it first trains a small ResNet34 U-Net on phantoms (128 px, a few CPU
minutes) so that masks are meaningful, then evaluates those weights at 512 px (the U-Net is
fully convolutional). Each backend runs in its own process so that peak memory (max RSS) is
its own. Prints one table: ms/image (median of repeats), ratio to eager float32, mask Dice
against eager float32 (minimum over images), peak RSS, GFLOP/s achieved (61.7 GFLOP per
image, counted by torch.utils.flop_counter); then data loading (1024 px PNG vs cache) and
`predict` end to end on a folder of 1024 px PNGs.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GFLOP_512 = 61.69  # FlopCounterMode on smp.Unet("resnet34"), one 1x1x512x512 image
VARIANTS = ["torch-fp32-eager", "torch-fp32-cl", "torch-bf16-cl", "torch-fp32-cl-compiled", "torch-bf16-cl-compiled", "onnx-fp32"]


def _inputs(n: int, size: int = 512) -> np.ndarray:
    from pneumoscope.inference.export import sample_inputs

    return sample_inputs(size, n, seed=2024)


def _backend(name: str, run: Path):
    import torch

    from pneumoscope.inference.backends import OnnxBackend, TorchBackend, bf16_supported
    from pneumoscope.runs import Run
    from pneumoscope.stage1.unet import load_model

    folder = Run(run)
    if name == "onnx-fp32":
        if not folder.onnx_path.is_file():
            from pneumoscope.inference.export import export_onnx
            export_onnx(folder)
        return OnnxBackend(folder.onnx_path)
    model, _ = load_model(folder, torch.device("cpu"))
    precision = "bf16" if "bf16" in name else "fp32"
    if precision == "bf16" and not bf16_supported(torch.device("cpu")):
        raise SystemExit(json.dumps({"error": "no bf16 on this CPU"}))
    return TorchBackend(model, torch.device("cpu"), precision, channels_last="-cl" in name, compile="compiled" in name)


def worker(name: str, run: Path, n: int, repeats: int, ref: Path) -> None:
    """Time one backend (in its own process) and print a JSON line."""
    from pneumoscope.stage1.metrics import per_image_dice

    x = _inputs(n)
    b = _backend(name, run)
    prob, _ = b(x)  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        prob, _ = b(x)
        times.append(time.perf_counter() - t)
    masks = prob > 0.5
    if name == "torch-fp32-eager":
        np.save(ref, masks)
    dice = float(per_image_dice(masks, np.load(ref)).min())
    ms = float(np.median(times)) * 1000 / n
    print(json.dumps({"backend": name, "ms": ms, "dice": dice, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "positive_px": int(masks.sum())}))


def quick_run(workdir: Path) -> Path:
    """Train a small ResNet34 U-Net on phantoms, then mark it for 512 px inference."""
    import yaml

    from pneumoscope import config
    from pneumoscope.stage1.pipeline import train_seg

    run = workdir / "r34"
    cfg = config.load("demo", ["model.encoder=resnet34", "data.synth_n=400", "train.epochs=4", "train.progress=false"])
    train_seg(cfg, run)
    c = yaml.safe_load((run / "config.yaml").read_text())
    c["data"]["size"] = 512  # same weights, evaluated at 512 px
    (run / "config.yaml").write_text(yaml.safe_dump(c))
    import torch
    for name in ("best.pt", "last.pt"):
        ck = torch.load(run / name, map_location="cpu", weights_only=False)
        ck["config"]["data"]["size"] = 512
        torch.save(ck, run / name)
    return run


def loading(workdir: Path, run: Path, n: int = 48) -> list[tuple[str, float]]:
    """Images/s: decoding 1024 px PNGs to the model input, reading the cache, predict end to end."""
    from pneumoscope.data.cache import build_cache
    from pneumoscope.data.io import read_image
    from pneumoscope.data.layouts import index_dataset
    from pneumoscope.data.synth import generate
    from pneumoscope.data.transforms import resize_image, standardize
    from pneumoscope.inference.batch import predict_files
    from pneumoscope.inference.options import PredictOptions

    data = workdir / "png1024"
    generate(data, n, 1024, seed=5)  # phantoms written as 1024 px PNGs
    files = sorted((data / "png_images").glob("*.png"))
    t = time.perf_counter()
    for f in files:
        standardize(resize_image(read_image(f)[0], 512))
    png = n / (time.perf_counter() - t)
    cache = build_cache(index_dataset(data)[0], 512, workdir / "cache")
    t = time.perf_counter()
    for i in range(len(cache)):
        standardize(np.asarray(cache.images[i]))
    cached = n / (time.perf_counter() - t)
    opts = PredictOptions(batch_size=8, resume=False)
    first = predict_files(run, [data / "png_images"], workdir / "pred", opts)  # measures and picks the backend
    again = predict_files(run, [data / "png_images"], workdir / "pred", opts)  # remembered backend, re-verified
    backend = again["notes"][-1].split(" (")[0].split(":")[0]
    return [("decode 1024 px PNG -> 512 input", png), ("read 512 px cache -> input", cached),
            ("predict end to end, first call (times every backend)", first["images_per_second"]),
            (f"predict end to end, next calls ({backend})", again["images_per_second"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--worker")
    ap.add_argument("--ref", type=Path)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.run, args.images, args.repeats, args.ref)
    workdir = Path(tempfile.mkdtemp(prefix="pneumoscope-bench-"))
    run = args.run or quick_run(workdir)
    ref = workdir / "ref.npy"
    rows = []
    for name in VARIANTS:
        p = subprocess.run([sys.executable, __file__, "--worker", name, "--run", str(run), "--images", str(args.images),
                            "--repeats", str(args.repeats), "--ref", str(ref)], capture_output=True, text=True)
        line = (p.stdout.strip().splitlines() or ["{}"])[-1]
        res = json.loads(line) if line.startswith("{") else {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:80]}
        rows.append({"backend": name, **res})
    base = rows[0]["ms"]
    print(f"\nResNet34 U-Net, 512x512, batch {args.images}, median of {args.repeats}, {GFLOP_512} GFLOP/image")
    print(f"{'backend':<26}{'ms/img':>9}{'x eager':>9}{'min Dice':>10}{'peak MB':>9}{'GFLOP/s':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:<26}  unavailable: {r['error']}")
            continue
        print(f"{r['backend']:<26}{r['ms']:>9.1f}{base / r['ms']:>9.2f}{r['dice']:>10.4f}{r['rss_mb']:>9.0f}"
              f"{GFLOP_512 / (r['ms'] / 1000):>9.0f}")
    print("\nthroughput (images/s)")
    for what, ips in loading(workdir, run):
        print(f"  {what:<58}{ips:>8.2f}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
