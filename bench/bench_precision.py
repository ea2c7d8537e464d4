"""Reduced precision judged by the run's validation images, per precision: ms per image, dice_kaggle
and dice_pos with their drop against float32, stage-2 decision flips, the verdict, and the share of
the machine's peak for that precision. Judges a copy of the run afresh (its own folder is untouched).

    .venv/bin/python bench/bench_precision.py --run runs/real/seg/resnet34

Peaks are estimates from the CPU flags: float32 = cores x 2 FMA units x lanes x 2 x clock; bf16
(AVX512-BF16 VDPBF16PS) twice that; int8 (AVX-512 VNNI VPDPBUSD) four times. Times are the best of two
calls on 4 validation images (batch 4) at the run's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_infer import PEAK_FACTOR, cpu_info, metric_cells  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "precision.jsonl"


def gflop_per_image(run: Path) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pneumoscope.folders import Run
    from pneumoscope.stage1.unet import load_model

    model, cfg = load_model(Run(run))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 1, cfg.data.size, cfg.data.size))
    return fc.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    import torch

    from pneumoscope.folders import Run
    from pneumoscope.folders.names import PRECISION
    from pneumoscope.inference.options import PredictOptions
    from pneumoscope.inference.precision import judge
    from pneumoscope.inference.predictor import Predictor

    work = Path(tempfile.mkdtemp(prefix="bench-precision-")) / "run"
    shutil.copytree(args.run, work, ignore=shutil.ignore_patterns(PRECISION, "backend*", "model*.onnx", "export.json"))
    pred = Predictor(work, PredictOptions(precision="fp32"))
    record = judge(Run(work), pred.model, torch.device("cpu"), pred.stage2, say=lambda line: print(line, flush=True))
    cpu = cpu_info()
    gflop = gflop_per_image(work)
    ref = record["reference"]
    print(f"CPU: {cpu['model']}; flags {' '.join(cpu['flags'])}; {cpu['cores']} cores at {cpu['ghz']} GHz; "
          f"float32 peak estimate {cpu['peak_gflops']} GFLOP/s; run {args.run}; {gflop:.1f} GFLOP per image")
    print(f"{record['validation_images']} validation images, int8 calibrated on {record['calibration_images']} training "
          f"images; accepted when dice_kaggle and dice_pos drop <= {record['max_drop']:g} and no stage-2 decision changes")
    print("| precision | backend | ms/img | x fp32 | dice_kaggle (drop) | dice_pos (drop) | decision flips | verdict | % of its peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [("fp32", {"backend": "torch-fp32 (eager)", **ref, "drop": {}, "decision_flips": 0, "reason": "reference"})]
    rows += list(record["precisions"].items())
    for name, e in rows:
        gps = gflop / (e["ms_per_image"] / 1000)
        peak = cpu["peak_gflops"] * PEAK_FACTOR[name.split("-")[0]]  # int8-onnx: int8 on ONNX Runtime
        dk, dp = metric_cells(e)
        print(f"| {name} | {e['backend']} | {e['ms_per_image']:.1f} | {ref['ms_per_image'] / e['ms_per_image']:.2f} | {dk} | {dp} | "
              f"{e['decision_flips']} | {e['reason']} | {100 * gps / max(peak, 1):.0f} % |")
    with open(args.results, "a") as fh:
        fh.write(json.dumps({"run": args.run, "cpu": cpu, "gflop_per_image": round(gflop, 2), "record": record}) + "\n")
    shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
