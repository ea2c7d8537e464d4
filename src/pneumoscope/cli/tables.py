"""The paper's tables as the commands print them (Table 1 per encoder, Table 2 per class), with intervals."""

from __future__ import annotations

from .. import soundness
from ..stats import fmt, too_wide

TABLE1_COLUMNS = ["encoder", "loss", "iou", "pixel_accuracy", "iou_pos", "dice_kaggle", "dice_pos"]


def print_table1(rows: list[dict], notes: list[str], folds: int = 0) -> None:
    """Table 1 of a study (one row per encoder) and its notes (``folds``: cross-validated, out of fold)."""
    cols = TABLE1_COLUMNS
    part = f"out-of-fold predictions of every labelled image, {folds} folds" if folds else "test split"
    print(f"Table 1 ({part}; 95 % bootstrap intervals over patients):")
    print("  " + "  ".join(f"{c:<18}" if c == "encoder" else f"{c:>22}" for c in cols))
    for row in rows:
        print("  " + "  ".join(f"{row[c]:<18}" if c == "encoder" else f"{fmt(row[c], [row.get(c + '_lo'), row.get(c + '_hi')]):>22}"
                               for c in cols) + f"  (n = {row['n_images']}, {row['n_positive']} positive)")
    for line in notes:
        print(f"  note: {line}")


def print_table2(s2: dict) -> None:
    """Table 2 of a stage-2 summary: per class before and after tuning, the threshold and the curve metrics."""
    part = "out of fold, every labelled image" if s2.get("evaluated_on") == "out-of-fold" else "evaluation images"
    print(f"Table 2 (classifier, {part}; 95 % bootstrap intervals over patients):")
    print(f"  {'stage':<14}{'class':<14}{'precision':>22}{'recall':>22}{'f1':>22}{'support':>9}")
    for stage in ("before", "after"):
        ci = s2[stage].get("ci95", {})
        for cls, c in s2[stage]["per_class"].items():
            print(f"  {stage + ' tuning':<14}{cls:<14}" + "".join(f"{fmt(c[k], ci.get(f'{cls}.{k}')):>22}"
                                                             for k in ("precision", "recall", "f1")) + f"{c['support']:>9}")
    for stage in ("before", "after"):
        m, ci = s2[stage], s2[stage].get("ci95", {})
        print(f"  {stage} tuning: threshold {m['threshold']:.4f}, " + ", ".join(
            f"{name} {fmt(m[k], ci.get(k))}" for name, k in (("ROC AUC", "roc_auc"), ("AP", "average_precision"),
                                                             ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                                                             ("ECE", "ece"))))
    if "n_images" in s2["after"]:
        a = s2["after"]
        print(f"  n = {a['n_images']} images ({a['n_positive']} pneumothorax, {a['n_patients']} patients)"
              + (f"; {too_wide(a['n_positive'])}" if too_wide(a["n_positive"]) else ""))
    diff = s2.get("after_minus_before")
    if diff:
        print("  after - before (paired bootstrap): " + ", ".join(
            f"{k} {d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            for k, d in diff.items() if k in ("roc_auc", "average_precision", "pneumothorax.f1") and d["difference"] == d["difference"]))
    for line in soundness.of_summary(s2):
        print(f"  WARNING: {line}")


def print_sizes(metrics: dict, label: str = "") -> None:
    """Dice and detection per size of the true finding, and false alarms on the negatives, plain and
    after the rule (a run's ``per_size``), one line each."""
    for stage, per in (("", metrics.get("per_size", {})), (" after the rule", metrics.get("postprocessed", {}).get("per_size", {}))):
        parts = []
        for bucket, m in per.items():
            if not m.get("n_images"):
                continue
            ci = m.get("ci95", {})
            if bucket == "negatives":
                parts.append(f"negatives (n={m['n_images']}) given a mask {fmt(m['false_alarm'], ci.get('false_alarm'), 3)}")
            else:
                parts.append(f"{bucket} (n={m['n_images']}): dice {fmt(m['dice'], ci.get('dice'), 3)}, "
                             f"detected {fmt(m['detected'], ci.get('detected'), 3)}")
        if parts:
            print(f"  {label}per size of finding{stage}: " + "; ".join(parts))
