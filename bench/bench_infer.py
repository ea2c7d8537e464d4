"""Inference at the machine's limit: every backend and precision's speed, agreement and validation
verdict, and `predict` end to end against a plain hand-written script, on this machine. Prints tables
(and the CPU it ran on).

    .venv/bin/python bench/bench_infer.py [--run RUN] [--files 48] [--repeats 5]
    .venv/bin/python bench/bench_infer.py --cache-files 1080        # the training data path only

Model: a ResNet34 U-Net at 512 px (the issue's case). Without ``--run`` the bench trains one briefly on
phantoms at 128 px and saves the weights as a 512 px run (the U-Net is fully convolutional).
Backends run in their own processes (peak memory is their own), batch 8 (predict's default), median
of ``--repeats``; agreement is the minimum mask Dice against eager float32 over the images. The
reduced precisions are the product's own: a copy of the run is judged as ``export`` does (int8
calibrated on the run's training images, each runtime judged on its validation images), and each
row shows the validation metrics, their drop against float32, the stage-2 decision flips, the verdict
and the share of the peak of its precision (bf16 2x, int8 4x the float32 peak).
End to end: `pneumoscope predict` on ``--files`` real 1024 px radiographs (the shared SIIM and NIH
samples; phantoms written at 1024 px when absent), a first call on a fresh copy of the run (export,
backend choice) and a second call, against a 25-line PIL + eager PyTorch script on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import peak_mb  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SIZE = 512
BATCH = 8
BACKENDS = ["torch-fp32-eager", "torch-fp32-cl", "torch-bf16-cl", "onnx-fp32", "onnx-fp32-seq", "onnx-int8",
            "openvino-fp32", "openvino-int8"]
PEAK_FACTOR = {"fp32": 1, "bf16": 2, "fp16": 2, "int8": 4}


# -- the machine ------------------------------------------------------------------------------
def cpu_info() -> dict:
    """Flags that matter, cores, clock and an estimate of the peak float32 GFLOP/s."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    model = (re.search(r"^model name\s*:(.*)$", text, re.M) or [None, "?"])[1].strip() if text else "?"
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    max_khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    ghz = int(max_khz.read_text()) / 1e6 if max_khz.exists() else (max(mhz) / 1000 if mhz else 0.0)
    cores = len(os.sched_getaffinity(0))
    width = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4  # float32 lanes per FMA
    peak = cores * 2 * width * 2 * ghz  # 2 FMA units a core, 2 flops an FMA
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16")
    return {"model": model, "cores": cores, "ghz": round(ghz, 2), "flags": [f for f in wanted if f in flags],
            "peak_gflops": round(peak)}


# -- the model ----------------------------------------------------------------------------------
def make_run(work: Path) -> Path:
    """A ResNet34 U-Net trained briefly on phantoms at 128 px, saved as a 512 px run."""
    import dataclasses

    import pandas as pd

    from pneumoscope import config
    from pneumoscope.folders import Run
    from pneumoscope.stage1.pipeline import train_seg
    from pneumoscope.stage1.unet import load_model

    small = work / "r34-128"
    cfg = config.load("demo", ["model.encoder=resnet34", "model.decoder_channels=256,128,64,32,16", "data.synth_n=400",
                               "train.epochs=4", "train.progress=false",
                               f"data.cache_dir={work / 'cache'}"])
    train_seg(cfg, small)
    model, trained = load_model(Run(small))
    run = Run(work / "r34-512")
    run.create()
    big = dataclasses.replace(trained, data=dataclasses.replace(trained.data, size=SIZE))
    split = Run(small).read_split() if Run(small).read_split() is not None else pd.DataFrame()
    run.write_split(split)
    run.write_config(big)
    run.save_weights(model.state_dict(), big, split, {"epoch": 4})
    return run.root


def flops_per_image(run: Path) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pneumoscope.folders import Run
    from pneumoscope.stage1.unet import load_model

    model, _ = load_model(Run(run))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 1, SIZE, SIZE))
    return fc.get_total_flops() / 1e9


def inputs(n: int = BATCH):
    from pneumoscope.inference.export import sample_inputs

    return sample_inputs(SIZE, n, seed=2024)


def backend(name: str, run: Path):
    """The product's backend of that name on the (judged) run: its export and its int8 model."""
    import torch

    from pneumoscope.folders import Run
    from pneumoscope.inference.backends import OnnxBackend, OpenVinoBackend, TorchBackend, bf16_supported
    from pneumoscope.stage1.unet import load_model

    folder = Run(run)
    if name.startswith("onnx") or name.startswith("openvino"):
        path = folder.current_int8() if name.endswith("int8") else folder.current_onnx()
        if path is None:
            raise SystemExit(json.dumps({"error": "no int8 model (the run's data could not be read)" if name.endswith("int8")
                                         else "no export"}))
        kind = OpenVinoBackend if name.startswith("openvino") else OnnxBackend
        return kind(path, threads=1 if name == "onnx-fp32-seq" else None)  # -seq: one thread, the floor when cores are busy
    model, _ = load_model(folder, torch.device("cpu"))
    if "bf16" in name and not bf16_supported(torch.device("cpu")):
        raise SystemExit(json.dumps({"error": "no native bf16 on this CPU"}))
    return TorchBackend(model, torch.device("cpu"), "bf16" if "bf16" in name else "fp32", channels_last="-cl" in name)


def judged_copy(run: Path, work: Path) -> tuple[Path, dict]:
    """A copy of the run, exported and judged as ``pneumoscope export`` does (its own folder untouched)."""
    import torch

    from pneumoscope.folders import Run
    from pneumoscope.inference.export import export_onnx
    from pneumoscope.inference.options import PredictOptions
    from pneumoscope.inference.precision import judge
    from pneumoscope.inference.predictor import Predictor

    copy = work / "judged"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("precision.json", "backend*", "model*.onnx", "export.json"))
    export_onnx(Run(copy))
    pred = Predictor(copy, PredictOptions(precision="fp32"))
    return copy, judge(Run(copy), pred.model, torch.device("cpu"), pred.stage2)


def metric_cells(entry: dict) -> list[str]:
    """dice_kaggle and dice_pos of a precision record entry, each with its change against float32
    when the entry has one (the reference has none)."""
    drop = entry.get("drop", {})
    return ["n/a" if entry[k] is None else f"{entry[k]:.4f}" + (f" ({-drop[k]:+.4f})" if k in drop else "")
            for k in ("dice_kaggle", "dice_pos")]


def validation_cells(name: str, record: dict) -> list[str]:
    """dice_kaggle (drop), dice_pos (drop), decision flips and verdict of a backend on the validation images."""
    if not record.get("available"):
        return ["n/a", "n/a", "", f"not judged: {record.get('reason', '?')[:60]}"]
    entry = next((e for e in record["precisions"].values() if e["backend"] == name), None)
    if entry is None:  # a float32 path: it reproduces float32 (the parity checks), so float32's own numbers
        return [*metric_cells(record["reference"]), "0", "float32 (reference)" if "fp32" in name else "not judged here"]
    return [*metric_cells(entry), str(entry["decision_flips"]), entry["reason"]]


def worker(name: str, run: Path, repeats: int, ref: Path) -> None:
    """Time one backend in this process; print a JSON line."""
    from pneumoscope.stage1.metrics import per_image_dice

    x = inputs()
    b = backend(name, run)
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
    print(json.dumps({"backend": name, "ms": float(np.median(times)) * 1000 / len(x), "dice": dice,
                      "rss_mb": peak_mb(os.getpid())}))  # VmHWM: ru_maxrss would carry the parent's peak across exec


# -- end to end -----------------------------------------------------------------------------
def real_files(work: Path, n: int) -> Path:
    """``n`` real 1024 px radiographs in one folder (SIIM then NIH), or phantoms at 1024 px."""
    folder = work / "files"
    folder.mkdir(exist_ok=True)
    found = sorted((SHARED / "siim-sample" / "png_images").glob("*.png")) + sorted((SHARED / "nih-sample" / "images").glob("*.png"))
    if len(found) >= n:
        for f in found[:n]:
            shutil.copy(f, folder / f.name)
    else:
        from pneumoscope.data.synth import generate

        generate(work / "ph", n, 1024, seed=5)
        for f in sorted((work / "ph" / "png_images").glob("*.png")):
            shutil.copy(f, folder / f.name)
    return folder


PLAIN = r'''
import sys, numpy as np, torch
from pathlib import Path
from PIL import Image
from pneumoscope.folders import Run
from pneumoscope.stage1.unet import load_model
model, cfg = load_model(Run(sys.argv[1]))
out = Path(sys.argv[3]); out.mkdir(exist_ok=True)
files = sorted(Path(sys.argv[2]).glob("*.png"))
for i in range(0, len(files), 8):
    chunk = files[i:i + 8]
    imgs = [Image.open(f).convert("L") for f in chunk]
    x = np.stack([np.asarray(im.resize((512, 512), Image.BILINEAR), np.float32) for im in imgs])
    x = (x - x.mean((1, 2), keepdims=True)) / x.std((1, 2), keepdims=True)
    with torch.inference_mode():
        prob = torch.sigmoid(model(torch.from_numpy(x[:, None]))).numpy()[:, 0]
    for f, im, p in zip(chunk, imgs, prob):
        m = Image.fromarray(((p > 0.5) * 255).astype(np.uint8)).resize(im.size, Image.NEAREST)
        m.save(out / f.name)
'''


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {p.stderr[-800:]}")
    return time.perf_counter() - t, p.stdout + p.stderr


def end_to_end(run: Path, files: Path, work: Path, n: int) -> dict:
    fresh = work / "fresh-run"
    shutil.copytree(run, fresh)
    for derived in ("model.onnx", "export.json", "backend.json", "backend-probe.npz", "model-int8.onnx", "precision.json"):
        (fresh / derived).unlink(missing_ok=True)
    cli = [sys.executable, "-m", "pneumoscope", "predict", "--run", str(fresh), str(files)]
    first, _ = timed([*cli, "--out", str(work / "p1")])
    again, text = timed([*cli, "--out", str(work / "p2")])
    chosen = re.findall(r"backend (\S+)", text)
    rate = re.search(r"predicted \d+ images \(([\d.]+) img/s, (\d+)% of it in the model", text)
    loop_ms = 1000 / float(rate.group(1)) if rate else float("nan")
    in_model_ms = loop_ms * int(rate.group(2)) / 100 if rate else float("nan")
    script = work / "plain.py"
    script.write_text(PLAIN)
    plain, _ = timed([sys.executable, str(script), str(run), str(files), str(work / "plain")])
    return {"first_ms": first * 1000 / n, "again_ms": again * 1000 / n, "plain_ms": plain * 1000 / n,
            "loop_ms": loop_ms, "in_model_ms": in_model_ms, "first_overhead_s": first - again,
            "backend": chosen[-1].rstrip(":") if chosen else "?"}


# -- the training data path -----------------------------------------------------------------------
def cache_speed(work: Path, n: int) -> list[tuple[str, float]]:
    """Images/s building the 512 px cache of ``n`` 1024 px files, threads of 1 worker vs processes on every core."""
    import pandas as pd

    from pneumoscope.data.cache import build_cache
    from pneumoscope.data.layouts import index_dataset

    src = sorted((SHARED / "siim-sample" / "png_images").glob("*.png")) + sorted((SHARED / "nih-sample" / "images").glob("*.png"))
    if not src:
        from pneumoscope.data.synth import generate

        generate(work / "ph", 60, 1024, seed=6)
        src = sorted((work / "ph" / "png_images").glob("*.png"))
    root = work / "cache-data"
    (root / "png_images").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{i:05d}.png"
        os.link(src[i % len(src)], root / "png_images" / name) if not (root / "png_images" / name).exists() else None
        names.append(name)
    pd.DataFrame({"new_filename": names, "ImageId": [Path(x).stem for x in names], "has_pneumo": 0}).to_csv(root / "train.csv",
                                                                                                     index=False)
    index, _ = index_dataset(root)
    rows = []
    for workers, label in ((1, "1 thread"), (os.cpu_count() or 2, f"{os.cpu_count()} processes")):
        c = build_cache(index, SIZE, work / f"cache-{workers}", workers=workers)
        rows.append((f"build the {SIZE} px cache of {n} 1024 px PNGs, {label}", c.build["images_per_second"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", nargs="*", default=BACKENDS)
    ap.add_argument("--cache-files", type=int, default=0, help="also (or only, without a model) measure the cache build")
    ap.add_argument("--worker")
    ap.add_argument("--ref", type=Path)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.run, args.repeats, args.ref)
    work = Path(tempfile.mkdtemp(prefix="pneumoscope-bench-infer-"))
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}; {cpu['cores']} cores at {cpu['ghz']} GHz; flags: {' '.join(cpu['flags'])}; "
          f"peak float32 estimate {cpu['peak_gflops']} GFLOP/s (cores x 2 FMA x width x 2 x clock)")
    if args.cache_files:
        for what, ips in cache_speed(work, args.cache_files):
            print(f"  {what:<70}{ips:>8.1f} images/s")
        if not args.backends:
            return
    run, record = judged_copy(args.run or make_run(work), work)
    gflop = flops_per_image(run)
    ref = work / "ref.npy"
    rows = []
    for name in ["torch-fp32-eager", *[b for b in args.backends if b != "torch-fp32-eager"]]:
        p = subprocess.run([sys.executable, __file__, "--worker", name, "--run", str(run), "--repeats", str(args.repeats),
                            "--ref", str(ref)], capture_output=True, text=True)
        line = (p.stdout.strip().splitlines() or ["{}"])[-1]
        res = json.loads(line) if line.startswith("{") else {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:100]}
        rows.append({"backend": name, **res})
    base = rows[0]["ms"]
    print(f"\nResNet34 U-Net at {SIZE}x{SIZE}, batch {BATCH}, median of {args.repeats}; {gflop:.1f} GFLOP per image; "
          f"validation: {record.get('validation_images', 0)} images, accepted when dice_kaggle and dice_pos drop <= "
          f"{record.get('max_drop', 0):g} and no stage-2 decision changes")
    print("| backend | ms/img | x eager | min mask Dice vs fp32 | val dice_kaggle (drop) | val dice_pos (drop) | decision flips | "
          "verdict | peak RSS MB | GFLOP/s | % of its precision's peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | unavailable: {r['error']} | | | | | | | | | |")
            continue
        gps = gflop / (r["ms"] / 1000)
        peak = cpu["peak_gflops"] * PEAK_FACTOR[next((p for p in ("int8", "bf16", "fp16") if p in r["backend"]), "fp32")]
        print(f"| {r['backend']} | {r['ms']:.1f} | {base / r['ms']:.2f} | {r['dice']:.4f} | "
              f"{' | '.join(validation_cells(r['backend'], record))} | {r['rss_mb']:.0f} | {gps:.0f} | {100 * gps / max(peak, 1):.0f} % |")
    print("GFLOP/s: the network's direct-convolution FLOPs (torch.utils.flop_counter) / time. Winograd-style 3x3 kernels "
          "(oneDNN, ONNX Runtime, OpenVINO) do fewer real operations and the clock is the nominal one, so rates above "
          "100 % of the peak mean such fast paths, not a wrong peak. Peaks: float32 as above, bf16 2x, int8 4x.")
    files = real_files(work, args.files)
    e2e = end_to_end(run, files, work, args.files)
    model_ms = next((r["ms"] for r in rows if r["backend"].replace("-eager", "") == e2e["backend"] and "ms" in r), float("nan"))
    print(f"\n`pneumoscope predict` on {args.files} real 1024 px PNGs (1-bit mask PNG + 512 px JPEG overlay per image, CSV):")
    print("| | ms/image | vs the chosen backend's model time |")
    print("|---|---|---|")
    print(f"| first call on a new run (export, precision judgement, backend choice) | {e2e['first_ms']:.0f} | {e2e['first_ms'] / model_ms:.2f}x |")
    print(f"| next calls (backend {e2e['backend']}, remembered), whole process | {e2e['again_ms']:.0f} | {e2e['again_ms'] / model_ms:.2f}x |")
    print(f"| next calls, predict's loop (decode, model, post-processing, writing) | {e2e['loop_ms']:.0f} | "
          f"{e2e['loop_ms'] / model_ms:.2f}x ({e2e['loop_ms'] / e2e['in_model_ms']:.2f}x the model's time inside it) |")
    print(f"| plain PIL + eager PyTorch script, same files | {e2e['plain_ms']:.0f} | {e2e['plain_ms'] / model_ms:.2f}x |")
    print(f"first-call overhead: {e2e['first_overhead_s']:.1f} s; process start-up and loading: "
          f"{(e2e['again_ms'] - e2e['loop_ms']) * args.files / 1000:.1f} s; "
          f"speed-up over the plain script: {e2e['plain_ms'] / e2e['again_ms']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
