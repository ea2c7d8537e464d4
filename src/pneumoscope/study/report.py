"""The study's HTML report: a self-contained page (plots inlined) that a person reads."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from .. import config as config_mod
from .. import soundness
from ..config import Config
from ..data.split import split_summary
from ..folders import Study
from ..pictures import overlay
from ..stage1.metrics import CI_KEYS
from ..stage2.result import Stage2Result
from ..stats import fmt
from . import plots

PAPER_TABLE1 = pd.DataFrame({"encoder": ["resnet34", "vgg16", "inceptionresnetv2", "xception"],
                             "loss": [0.2761, 0.2811, 0.2718, 0.2674], "iou": [0.4733, 0.5504, 0.2238, 0.6085],
                             "pixel_accuracy": [0.9885, 0.9928, 0.9943, 0.9920]})
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{background:#f7f7f2;border-left:4px solid #c9b458;padding:.5em 1em;margin:.8em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em;white-space:pre-wrap;overflow-wrap:anywhere}.legend span{padding:0 .5em;font-weight:600}"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, na_rep="–")


def table1_with_intervals(table1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as read: each metric with its 95 % interval, and the n it rests on."""
    rows = []
    for r in table1.to_dict("records"):
        row = {"encoder": r["encoder"], "loss": fmt(r["loss"], None, 4)}
        for k in CI_KEYS:
            row[k] = fmt(r[k], [r.get(f"{k}_lo"), r.get(f"{k}_hi")], 4)
        row.update({"n (positive)": f"{r.get('n_images')} ({r.get('n_positive')})",
                    **{f"{k}_pp": fmt(r.get(f"{k}_pp"), None, 4) for k in ("iou", "dice_kaggle", "dice_pos")}})
        rows.append(row)
    return pd.DataFrame(rows)


def table2_with_intervals(s: dict) -> pd.DataFrame:
    """Table 2 as read: per-class precision/recall/F1 with intervals, before and after tuning."""
    rows = []
    for stage in ("before", "after"):
        m, ci = s[stage], s[stage].get("ci95", {})
        for cls_name, c in m["per_class"].items():
            rows.append({"stage": f"{stage} tuning", "class": cls_name, "support": c["support"],
                         **{k: fmt(c[k], ci.get(f"{cls_name}.{k}"), 4) for k in ("precision", "recall", "f1")}})
    return pd.DataFrame(rows)


def notes_html(lines: list[str]) -> str:
    """Warnings and caveats a reader must see beside the numbers."""
    return "".join(f'<div class="note">{html.escape(line)}</div>' for line in lines)


def overlay_grid(res: Stage2Result, path: Path, per_kind: int = 4, tile: int = 200) -> Path | None:
    """True positives, false positives and false negatives of the tuned classifier, each with
    ground truth (green), stage-1 prediction (red), and its P(pneumothorax) beside the threshold."""
    y, pred = res.test.labels, (res.p_after >= res.summary["threshold"]).astype(int)
    rows = []
    for kind, sel in (("true positive", (y == 1) & (pred == 1)), ("false positive", (y == 0) & (pred == 1)),
                      ("false negative", (y == 1) & (pred == 0))):
        tiles = []
        for i in np.flatnonzero(sel)[:per_kind]:
            r = int(res.test_rows[i])
            img = np.asarray(res.cache.images[r])
            truth = np.asarray(res.cache.masks[r]) if res.cache.index["has_mask"].iat[r] else None
            t = overlay(img, res.test.probs[i].astype(np.float32) > 0.5, truth)
            t = cv2.resize(t, (tile, tile), interpolation=cv2.INTER_AREA)
            cv2.putText(t, f"p={res.p_after[i]:.2f} (t={res.summary['threshold']:.2f})", (4, 16), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, (255, 255, 0), 1)
            tiles.append(t)
        if not tiles:
            empty = np.full((tile, tile, 3), 255, np.uint8)
            cv2.putText(empty, f"none of {len(y)}", (8, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (90, 90, 90), 1)
            tiles.append(empty)
        tiles += [np.full((tile, tile, 3), 255, np.uint8)] * (per_kind - len(tiles))
        label = np.full((tile, 150, 3), 255, np.uint8)
        cv2.putText(label, kind, (6, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        rows.append(np.hstack([label, *tiles]))
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def _per_source_seg(study: Study, table1: pd.DataFrame) -> str:
    """Table 1's metrics per source (several --data folders), for each encoder."""
    rows = []
    for e in table1.encoder:
        metrics = study.seg_run(e).read_metrics()
        with_rule = metrics.get("postprocessed", {}).get("per_source", {})
        for name, m in metrics.get("per_source", {}).items():
            ci, r = m.get("ci95", {}), with_rule.get(name, {})
            rows.append({"encoder": e, "source": name, "n (positive)": f"{m['n_images']} ({m['n_positive']})",
                         **{k: fmt(m.get(k), ci.get(k), 4) for k in ("dice_kaggle", "dice_pos", "iou")},
                         **{f"{k}_pp": fmt(r.get(k), r.get("ci95", {}).get(k), 4) for k in ("dice_kaggle", "dice_pos")}})
    if not rows:
        return ""
    return "<h3>Per source</h3>" + _table(pd.DataFrame(rows))


def size_table(metrics: dict) -> pd.DataFrame:
    """Dice and detection rate per size of the true finding (and false alarms on the negatives), plain
    and after the rule, from a run's metrics (empty when they have no ``per_size``)."""
    rows = []
    for stage, per in (("threshold", metrics.get("per_size", {})), ("rule", metrics.get("postprocessed", {}).get("per_size", {}))):
        for bucket, m in per.items():
            ci = m.get("ci95", {})
            row = {"masks": stage, "true finding": "none (negatives)" if bucket == "negatives" else f"{bucket} of the image",
                   "n": m["n_images"]}
            for k in ("dice", "detected", "false_alarm"):
                row[k] = fmt(m.get(k), ci.get(k), 3) if k in m else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def _per_size_seg(study: Study, table1: pd.DataFrame) -> str:
    rows = []
    for e in table1.encoder:
        df = size_table(study.seg_run(e).read_metrics())
        if len(df):
            rows.append(df.assign(encoder=e)[["encoder", *df.columns]])
    if not rows:
        return ""
    return ("<h3>Per size of finding</h3><p>Most real pneumothoraces are small: Dice and the share of positives whose "
            "mask touches the truth (detected), per share of the image the true finding covers; on the negatives, the "
            "share given a mask (false alarms).</p>" + _table(pd.concat(rows, ignore_index=True)))


def _histories(study: Study, encoders) -> dict[str, pd.DataFrame]:
    """Each encoder's training history; a cross-validated run's, each fold's."""
    from ..folders import Run, fold_folder

    out = {}
    for e in encoders:
        run = study.seg_run(e)
        k = run.read_metrics().get("folds")
        if k:
            out.update({f"{e} fold {f}": Run(fold_folder(run.root, f)).read_history() for f in range(k)})
        else:
            out[e] = run.read_history()
    return out


def _per_source_cls(s: dict) -> str:
    """Stage 2 per source, and how well the features predict the source itself."""
    out = ""
    if s.get("per_source"):
        out += "<h3>Per source</h3>" + _table(pd.DataFrame([{"source": k, **v} for k, v in s["per_source"].items()]))
    c = s.get("source_check")
    if c:
        out += (f"<p>Shortcut check (cross-validated on the {c['n_images']} classifier images): the features predict the "
                f"source with ROC AUC {c['source_auc']:.3f} and the label with {c['label_auc']:.3f}.</p>")
    return out


def _encoder_comparisons(rows: list[dict]) -> str:
    if not rows:
        return ""
    df = pd.DataFrame([{"encoder - best": f"{r['encoder']} - {r['minus']}", "metric": r["metric"],
                        "difference [95 % interval]": fmt(r["difference"], r["ci95"], 4),
                        "reading": "a real difference" if r["clear"] else "within noise (the interval holds 0)"} for r in rows])
    return "<h3>Encoders against the best one (paired bootstrap on the same test images)</h3>" + _table(df)


def write_report(study: Study, cfg: Config, table1: pd.DataFrame, best: str, res: Stage2Result,
                 notes: tuple[list[str], list[str]] = ([], []), comparisons: list[dict] | None = None) -> Path:
    """Write the study's plots and its self-contained HTML report; returns the report's path. ``notes``:
    the lines shown beside Table 1 and beside Table 2; ``comparisons``: encoder against the best (as
    :func:`..study.run.study_notes` and :func:`..study.run.encoder_comparisons` give them)."""
    histories = _histories(study, table1.encoder)
    folds = study.seg_run(best).read_metrics().get("folds")
    split = study.seg_run(best).read_split()
    counts = split_summary(split) if split is not None else pd.DataFrame()
    y = res.test.labels
    curves = {"before tuning": res.p_before, "after tuning": res.p_after}
    s = res.summary
    figs = {
        "curves": plots.training_curves(histories, study.plot_path("training_curves")),
        "rocpr": plots.roc_pr(y, curves, study.plot_path("roc_pr")),
        "cm": plots.confusion(s["after"]["confusion"], study.plot_path("confusion"), f"after tuning (t={s['threshold']:.3f})"),
        "cal": plots.calibration(y, curves, study.plot_path("calibration")),
        "grid": overlay_grid(res, study.plot_path("overlays")),
    }
    summary = pd.DataFrame([{"stage": k + " tuning", "threshold": f"{s[k]['threshold']:.4f}",
                             **{m: fmt(s[k][m], s[k].get("ci95", {}).get(m), 4) for m in ("accuracy", "roc_auc",
                                "average_precision", "sensitivity", "specificity", "ece")}} for k in ("before", "after")])
    diff = pd.DataFrame([{"metric": k, "after - before": f"{d['difference']:+.4f}",
                          "95 % interval (paired bootstrap)": f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"}
                         for k, d in s.get("after_minus_before", {}).items() if d["difference"] == d["difference"]])
    seg_notes, cls_notes = notes
    data_names = ", ".join([str(cfg.data.path), *map(str, cfg.data.extra_paths)]) if cfg.data.path else "synthetic phantoms (embedded default)"
    t = s["tuning"]
    seg_scope = f"out-of-fold predictions of every labelled image, {folds} folds" if folds else "test split"
    body = f"""<h1>pneumoscope report</h1>
<p>Data: <b>{html.escape(data_names)}</b>; training size {cfg.data.size} px;
encoders: {', '.join(table1.encoder)}. Best encoder by validation IoU: <b>{html.escape(best)}</b>.</p>
<h2>Data — images of each source and kind in each part of the split</h2>{_table(counts)}
<h2>Table 1 — segmentation ({seg_scope}, threshold {cfg.train.threshold})</h2>
<p>Each metric with its 95 % bootstrap interval (patients resampled, 2,000 draws, seed 0).</p>
{notes_html(seg_notes)}{_table(table1_with_intervals(table1))}
{_per_source_seg(study, table1)}{_per_size_seg(study, table1)}{_encoder_comparisons(comparisons or [])}
<p>Columns ending in <code>_pp</code>: after each run's post-processing rule (top threshold, minimum area,
bottom threshold), {"each fold's images with the rule searched on the other folds' out-of-fold predictions" if folds
else "searched on the validation images"}; its minimum area never exceeds the 5th percentile of the training positives' areas.</p>
<p>Paper's Table 1 for reference (SIIM-ACR, 512 px, ImageNet weights):</p>{_table(PAPER_TABLE1)}
<h2>Training curves</h2>{_img(figs['curves'], 'training curves')}
<h2>Table 2 — classification (stage 2, {"out-of-fold: every labelled image" if s.get("evaluated_on") == "out-of-fold" else "evaluation images"})</h2>
<p>95 % bootstrap intervals (patients resampled); the change made by tuning is a paired bootstrap
difference on the same images.</p>{notes_html([f'WARNING: {w}' for w in soundness.of_summary(s)] + cls_notes)}
{_table(table2_with_intervals(s))}{_table(summary)}{_table(diff) if len(diff) else ""}
{_per_source_cls(s)}
<div class="note"><b>Data and leakage.</b> {html.escape(s['leakage'])}<br><b>Features.</b> Phi(I, M) from
{html.escape(s['feature_note'])}, plus mask statistics and metadata ({s['n_features']} columns).<br>
<b>Tuning.</b> Random search over {t['n_candidates']} candidates, {cfg.stage2.cv_folds}-fold stratified CV, scoring
{html.escape(t['scoring'])}: default {t['default_score']:.4f}, best {t['best_score']:.4f}
({'tuned parameters kept' if t['params'] else 'no candidate beat the defaults, defaults kept'}).
Before tuning: XGBoost defaults at threshold 0.5. After tuning: threshold {s['threshold']:.4f} by
{html.escape(s['threshold_rule'])} on out-of-fold probabilities of the fitting images; calibration: {html.escape(s['calibration'])}.</div>
<h2>ROC and precision-recall</h2>{_img(figs['rocpr'], 'ROC and PR curves')}
<h2>Confusion matrix and calibration</h2>{_img(figs['cm'], 'confusion matrix')} {_img(figs['cal'], 'calibration')}
<h2>Examples</h2><p class="legend">Ground truth <span style="color:#00a000">green</span>, stage-1 prediction
<span style="color:#d00000">red</span>; p = P(pneumothorax) after tuning, t = the decision threshold.</p>{_img(figs['grid'], 'overlay examples')}
<h2>Model card</h2><p>Also in the study folder and in the best run's folder, as Markdown.</p>
<pre>{html.escape(study.model_card_path.read_text()) if study.model_card_path.is_file() else "(not written)"}</pre>
<h2>Resolved configuration</h2><pre>{html.escape(yaml.safe_dump(config_mod.to_dict(cfg), sort_keys=False))}</pre>"""
    page = f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pneumoscope report</title><style>{CSS}</style></head><body>{body}</body></html>'
    return study.write_report(page)
