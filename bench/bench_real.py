"""Training recipes judged on real radiographs: positives only vs positives + normals, several split seeds.

    .venv/bin/python bench/bench_real.py --recipes real demo --seeds 0 1 2     # ~10 min a run on 2 cores
    .venv/bin/python bench/bench_real.py --table                                  # the tables, from the results file

Data (``../shared/data``, or ``--shared``): the 30 SIIM-ACR positives with masks and the 60 NIH
normals. For each split seed a common test set is drawn first (8 SIIM positives + 15 NIH normals,
never trained on); then each recipe is trained twice on what is left, with the same epochs:

- ``pos``: the 22 other SIIM positives only;
- ``pos+normals``: those 22 positives and the 45 other NIH normals (empty masks).

Both models are evaluated on the same test set (``evaluate-seg --data``): ``dice_pos`` (the 8
positives) and ``dice_kaggle`` (all 23: a normal counts 1 when its predicted mask is empty), at the
0.5 threshold and with the run's post-processing rule, beside the all-empty baseline (15/23 = 0.652).
Every run appends a JSON line to ``bench/results/real.jsonl`` (a long bench can be resumed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import cpu_flags  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "real.jsonl"
N_TEST_POS, N_TEST_NEG = 8, 15
COMMON = ["model.encoder=resnet34", "data.size=256", "train.epochs=20", "train.progress=false",
          "data.val_fraction=0.25", "data.test_fraction=0", "model.encoder_weights=null"]
# recipe -> (bundled config, overrides). "issue" is the real-data command of the issue on today's defaults.
RECIPES: dict[str, tuple[str | None, list[str]]] = {
    "demo": ("demo", ["train.lr=3e-4", "train.batch_size=8"]),  # train-seg's default before: demo.yaml, lr 3e-4, batch 8
    "old-default": (None, ["train.lr=3e-4", "train.batch_size=8"]),  # the dataclass defaults: plateau, full decoder, alpha 0.25
    "real": ("real", []),  # configs/real.yaml: the recipe chosen here
    "real-v1": ("real", ["data.positive_floor=0.5", "train.rule_objective=balanced"]),  # the first candidate
    "real-v1-no-floor": ("real", ["train.rule_objective=balanced"]),
    "real-no-min-epochs": ("real", ["train.min_epochs=0"]),
    "real-lr-1e-3": ("real", ["train.lr=1e-3"]),
    "real-no-augment": ("real", ["data.augment=false"]),
    "real-alpha-0.25": ("real", ["loss.focal_alpha=0.25"]),
}




def _empty_mask(folder: Path, like: Path) -> Path:
    from PIL import Image

    path = folder / "empty.png"
    if not path.is_file():
        with Image.open(like) as im:
            Image.new("L", im.size, 0).save(path)
    return path


def write_kaggle(folder: Path, positives: list[Path], siim: Path, normals: list[Path]) -> Path:
    """A Kaggle-layout folder of symlinks: SIIM positives with their masks, NIH normals with empty masks."""
    (folder / "png_images").mkdir(parents=True)
    (folder / "png_masks").mkdir()
    rows = []
    for img in positives:
        (folder / "png_images" / img.name).symlink_to(img)
        (folder / "png_masks" / img.name).symlink_to(siim / "png_masks" / img.name)
        rows.append({"new_filename": img.name, "ImageId": img.stem, "has_pneumo": 1})
    for img in normals:
        name = f"nih_{img.stem}.png"
        (folder / "png_images" / name).symlink_to(img)
        (folder / "png_masks" / name).symlink_to(_empty_mask(folder.parent, img))
        rows.append({"new_filename": name, "ImageId": f"nih_{img.stem}", "has_pneumo": 0})
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    return folder


def materialise(shared: Path, seed: int, work: Path) -> dict[str, Path]:
    """The common test set and the two training pools of one split seed."""
    siim, nih = shared / "siim-sample", shared / "nih-sample"
    positives = sorted((siim / "png_images").glob("*.png"))
    labels = pd.read_csv(nih / "labels.csv")
    normals = sorted(nih / f for f in labels.loc[labels["label"] == "normal", "file"])
    rng = np.random.default_rng(1000 + seed)
    pos_order, neg_order = rng.permutation(len(positives)), rng.permutation(len(normals))
    test_pos = [positives[i] for i in pos_order[:N_TEST_POS]]
    train_pos = [positives[i] for i in pos_order[N_TEST_POS:]]
    test_neg = [normals[i] for i in neg_order[:N_TEST_NEG]]
    train_neg = [normals[i] for i in neg_order[N_TEST_NEG:]]
    root = work / f"seed{seed}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return {"test": write_kaggle(root / "test", test_pos, siim, test_neg),
            "pos": write_kaggle(root / "pos", train_pos, siim, []),
            "pos+normals": write_kaggle(root / "pos+normals", train_pos, siim, train_neg)}


def run_one(recipe: str, seed: int, pool: str, data: dict[str, Path], work: Path, keep: bool) -> dict:
    from pneumoscope import config
    from pneumoscope.stage1.pipeline import evaluate_seg, train_seg

    base, overrides = RECIPES[recipe]
    cfg = config.load(base, [*COMMON, f"data.path={data[pool]}", f"data.split_seed={seed}", f"train.seed={seed}", *overrides])
    out = work / f"{recipe}-{pool}-{seed}"
    t0 = time.perf_counter()
    train_seg(cfg, out)
    seconds = time.perf_counter() - t0
    m = evaluate_seg(out, str(data["test"]), "all")
    by_objective = rule_objectives(out, data["test"])
    history = pd.read_csv(out / "history.csv")
    row = {"recipe": recipe, "seed": seed, "pool": pool, "seconds": round(seconds, 1), "cpu": cpu_flags(),
           "machine": platform.processor() or platform.machine(), "epochs_run": int(len(history)),
           "best_epoch": int(history["val_loss"].idxmin() + 1), "n_test": m["n_images"], "n_test_pos": m["n_positive"],
           "empty_baseline": round(N_TEST_NEG / (N_TEST_NEG + N_TEST_POS), 4),
           **{k: m[k] for k in ("dice_pos", "dice_kaggle", "iou_pos")},
           **{f"{k}_pp": m.get("postprocessed", {}).get(k) for k in ("dice_pos", "dice_kaggle")},
           "warnings": m.get("warnings", []), "objective": cfg.train.rule_objective, **by_objective}
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


OBJECTIVES = ("dice_kaggle", "balanced", "guarded")


def rule_objectives(out: Path, test: Path) -> dict:
    """The same trained model with its post-processing rule searched for each objective on its own
    validation images, evaluated on the common test set (the rule search is cheap; training is not)."""
    import torch

    from pneumoscope.data.prepare import prepare_data
    from pneumoscope.folders import Run
    from pneumoscope.stage1 import postprocess
    from pneumoscope.stage1.evaluation import evaluate_probs
    from pneumoscope.stage1.pipeline import evaluate_seg, split_of_rows
    from pneumoscope.stage1.unet import load_model

    run = Run(out)
    saved = (out / "postprocess.json").read_bytes()
    model, cfg = load_model(run, torch.device("cpu"))
    cache, _ = prepare_data(cfg)
    val = np.flatnonzero(split_of_rows(cache, run.read_split()) == "val")
    _, probs = evaluate_probs(model, cfg, cache, val, torch.device("cpu"))
    row = {}
    for objective in OBJECTIVES:
        rule, score, plain = postprocess.search(probs, np.asarray(cache.masks[val]), objective)
        postprocess.save_rule(run, rule, score, plain, objective)
        pp = evaluate_seg(out, str(test), "all").get("postprocessed", {})
        row.update({f"dice_pos_pp_{objective}": pp.get("dice_pos"), f"dice_kaggle_pp_{objective}": pp.get("dice_kaggle")})
    (out / "postprocess.json").write_bytes(saved)
    return row


def table(rows: list[dict]) -> str:
    """Per recipe and pool: each seed's dice_pos / dice_kaggle, and whether the issue's targets hold."""
    df = pd.DataFrame(rows).drop_duplicates(["recipe", "seed", "pool"], keep="last")
    lines = [f"CPU flags: {', '.join(sorted(set(df['cpu'])))}",
             "| recipe | pool | seeds | dice_pos per seed (mean) | dice_kaggle per seed (mean) | with rule: dice_pos (mean) "
             "| with rule: dice_kaggle (mean) | epochs run | minutes per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (recipe, pool), g in df.groupby(["recipe", "pool"], sort=False):
        g = g.sort_values("seed")

        def fmt(col: str, g: pd.DataFrame = g) -> str:
            return " / ".join(f"{v:.3f}" if v == v and v is not None else "–" for v in g[col]) + f" ({g[col].mean():.3f})"

        lines.append(f"| {recipe} | {pool} | {', '.join(map(str, g['seed']))} | {fmt('dice_pos')} | {fmt('dice_kaggle')} | "
                     f"{fmt('dice_pos_pp')} | {fmt('dice_kaggle_pp')} | {' / '.join(map(str, g['epochs_run']))} | {g['seconds'].mean() / 60:.1f} |")
    if any(f"dice_kaggle_pp_{o}" in df for o in OBJECTIVES):
        lines += ["", "The same models with the rule searched for each objective (test dice_pos / dice_kaggle, mean over seeds):",
                  "| recipe | pool | " + " | ".join(OBJECTIVES) + " |", "|---|---|" + "---|" * len(OBJECTIVES)]
        for (recipe, pool), g in df.groupby(["recipe", "pool"], sort=False):
            if f"dice_kaggle_pp_{OBJECTIVES[0]}" in g and g[f"dice_kaggle_pp_{OBJECTIVES[0]}"].notna().any():
                lines.append(f"| {recipe} | {pool} | " + " | ".join(
                    f"{g[f'dice_pos_pp_{o}'].mean():.3f} / {g[f'dice_kaggle_pp_{o}'].mean():.3f}" for o in OBJECTIVES) + " |")
    lines.append("")
    lines.append("Targets (issue 17), per seed, on the model as predict delivers it (with its post-processing rule): "
                 "with the normals, dice_pos >= positives only, and dice_kaggle above both the positives-only model "
                 "and the all-empty baseline.")
    for recipe, g in df.groupby("recipe", sort=False):
        for seed, s in g.groupby("seed"):
            a = s.set_index("pool")
            if {"pos", "pos+normals"} <= set(a.index):
                p, n = a.loc["pos"], a.loc["pos+normals"]
                ok = [n.dice_pos_pp >= p.dice_pos_pp, n.dice_kaggle_pp > p.dice_kaggle_pp, n.dice_kaggle_pp > n.empty_baseline]
                lines.append(f"- {recipe}, seed {seed}: dice_pos {p.dice_pos_pp:.3f} -> {n.dice_pos_pp:.3f} "
                             f"({'met' if ok[0] else 'NOT met'}); dice_kaggle {p.dice_kaggle_pp:.3f} -> {n.dice_kaggle_pp:.3f} "
                             f"({'met' if ok[1] else 'NOT met'}), baseline {n.empty_baseline:.3f} ({'met' if ok[2] else 'NOT met'})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["real"], choices=list(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--pools", nargs="+", default=["pos", "pos+normals"], choices=["pos", "pos+normals"])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--keep-runs", action="store_true", help="keep the run folders (under a temporary folder)")
    ap.add_argument("--table", action="store_true", help="print the tables of the results file and stop")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]))
        return
    shared = Path(args.shared)
    if not (shared / "siim-sample").is_dir() or not (shared / "nih-sample").is_dir():
        raise SystemExit(f"the real samples are not in {shared}: nothing to measure")
    os.environ.setdefault("PNEUMOSCOPE_CACHE", tempfile.mkdtemp(prefix="bench-real-cache-"))
    work = Path(tempfile.mkdtemp(prefix="bench-real-"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for seed in args.seeds:
            data = materialise(shared, seed, work)
            for recipe in args.recipes:
                for pool in args.pools:
                    row = run_one(recipe, seed, pool, data, work, args.keep_runs)
                    print(json.dumps(row), flush=True)
                    with open(RESULTS, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    rows.append(row)
    finally:
        if not args.keep_runs:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))


if __name__ == "__main__":
    main()
