"""The one prepared GPU check: the paper protocol's training throughput at 512 px (float32 as the paper
trains, AMP, AMP + channels_last, and DDP on one GPU through torchrun/NCCL) and predict's throughput,
each a whole `pneumoscope` process on phantoms, so it runs on a machine with no data and no network.

    python bench/bench_gpu.py                       # on the GPU machine (about 5 minutes on one H200)
    python bench/bench_gpu.py --device cpu --size 64 --images 48 --batch-size 8    # a dry run of the script itself

Every variant trains `--config paper` (ResNet34 U-Net, Adam 1e-3, batch 32, deterministic) for 2
epochs with ``encoder_weights: null`` (offline) and reports the second epoch (warm: no cuDNN or
allocator start-up in it) as training images per second; a variant that fails is reported with its
last error line and the others go on. Predict: the AMP + channels_last run on ``--predict-images``
phantoms at 1024 px, whole process, after a warm-up call that exported the model, judged its
precision and chose the backend. Prints a markdown table with the device and CPU flags, and writes
``gpu.json`` to ``$OUT`` (the device tool's output folder) or ``bench/results/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import cpu_flags  # noqa: E402

VARIANTS = {  # name: (--set overrides, launched by torchrun)
    "float32 NCHW (the paper)": (["train.amp=false", "train.channels_last=false"], False),
    "AMP": (["train.amp=true", "train.channels_last=false"], False),
    "AMP + channels_last": (["train.amp=true", "train.channels_last=true"], False),
    "AMP + channels_last, DDP on 1 GPU (torchrun, NCCL)": (["train.amp=true", "train.channels_last=true"], True),
}


def device_name(device: str) -> str:
    """The GPU (name, memory, driver) or the CPU and its flags."""
    if device.startswith("cuda"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            return out.splitlines()[0] if out else "cuda (nvidia-smi said nothing)"
        except (OSError, subprocess.TimeoutExpired):
            return "cuda (no nvidia-smi)"
    return f"cpu ({cpu_flags()})"


def train(name: str, overrides: list[str], ddp: bool, args: argparse.Namespace, work: Path) -> dict:
    """Two epochs of one variant; the second epoch's training images per second."""
    out = work / re.sub(r"\W+", "-", name).strip("-").lower()
    sets = ["model.encoder_weights=null", f"data.synth_n={args.images}", f"data.synth_size={args.size}",
            "data.val_fraction=0.125", "data.test_fraction=0.125", "train.progress=false",
            f"data.cache_dir={work / 'cache'}", *overrides]
    cmd = ["-m", "pneumoscope", "train-seg", "--config", "paper", "--size", str(args.size), "--epochs", "2",
           "--batch-size", str(args.batch_size), "--device", args.device, "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"] if ddp
                else [sys.executable])
    t = time.perf_counter()
    p = subprocess.run([*launcher, *cmd], capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t
    history = out / "history.csv"
    if p.returncode or not history.is_file():
        last = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ["no output"])[-1]
        return {"variant": name, "error": last[:200], "wall_s": round(wall, 1)}
    rows = list(csv.DictReader(history.open()))
    n_train = round(args.images * 0.75)
    second = float(rows[-1]["seconds"])
    return {"variant": name, "epoch_s": second, "train_images_per_s": round(n_train / second, 1), "wall_s": round(wall, 1),
            "val_dice_pos": float(rows[-1]["val_dice_pos"]), "run": str(out)}


def predict(run: Path, args: argparse.Namespace, work: Path) -> dict:
    """predict's throughput on 1024 px phantoms: a warm-up call, then a timed whole process."""
    files = work / "predict-files"
    subprocess.run([sys.executable, "-m", "pneumoscope", "synth", "--out", str(files), "--n", str(args.predict_images),
                    "--size", "1024"], check=True, capture_output=True, text=True, timeout=args.timeout)
    cli = [sys.executable, "-m", "pneumoscope", "predict", "--run", str(run), str(files / "png_images"),
           "--device", args.device, "--no-resume", "--batch-size", str(args.batch_size)]
    warm = subprocess.run([*cli, "--out", str(work / "p0")], capture_output=True, text=True, timeout=args.timeout)
    if warm.returncode:
        return {"error": (warm.stderr.strip().splitlines() or ["?"])[-1][:200]}
    t = time.perf_counter()
    p = subprocess.run([*cli, "--out", str(work / "p1")], capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t
    text = p.stdout + p.stderr
    rate = re.search(r"predicted (\d+) images \(([\d.]+) img/s, (\d+)% of it in the model", text)
    backend = re.findall(r"^backend (\S+)", text, re.M)
    precision = [ln for ln in text.splitlines() if ln.startswith("precision")]
    return {"images": args.predict_images, "wall_s": round(wall, 1), "images_per_s_whole_process": round(args.predict_images / wall, 1),
            "loop_images_per_s": float(rate.group(2)) if rate else None, "share_in_model": int(rate.group(3)) if rate else None,
            "backend": backend[-1].rstrip(":") if backend else "?", "precision": precision[-1] if precision else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=640, help="phantoms per training run (75 %% train)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--predict-images", type=int, default=256)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per command")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    os.environ.setdefault("PNEUMOSCOPE_CACHE", str(work / "cache"))
    print(f"device: {device_name(args.device)}; CPU flags: {cpu_flags()}; {args.size} px, batch {args.batch_size}, "
          f"{args.images} phantoms per run", flush=True)
    rows = []
    for name in args.variants:
        overrides, ddp = VARIANTS[name]
        rows.append(train(name, overrides, ddp, args, work))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r["train_images_per_s"] for r in rows if "error" not in r), None)
    print("\n| training variant (paper config, ResNet34 U-Net) | s per epoch (2nd) | train images/s | x float32 | val dice_pos |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | failed: {r['error']} | | | |")
        else:
            print(f"| {r['variant']} | {r['epoch_s']:.2f} | {r['train_images_per_s']:.1f} | "
                  f"{r['train_images_per_s'] / base:.2f} | {r['val_dice_pos']:.3f} |")
    runs = [r for r in rows if "error" not in r and not r["variant"].startswith("float32")]
    pred = predict(Path(runs[0]["run"]), args, work) if runs else {"error": "no trained run"}
    print(f"\npredict: {json.dumps(pred)}")
    results = {"device": device_name(args.device), "cpu_flags": cpu_flags(), "args": vars(args), "train": rows, "predict": pred}
    dest = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "gpu.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {dest / 'gpu.json'}")


if __name__ == "__main__":
    main()
