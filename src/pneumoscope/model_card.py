"""``MODEL_CARD.md``: what a trained model is, what it was trained and judged on, and what it is not for.

The structure is Hugging Face's model card (YAML metadata, then Model details, Uses, Bias, risks and
limitations, Training details, Evaluation, How to use; after Mitchell et al., "Model Cards for Model
Reporting", FAT* 2019), with the items of the CLAIM checklist (Mongan et al., Radiology: AI 2020)
that a run folder can answer: data sources and counts per split, preprocessing, the training recipe,
the reference standard, metrics with their intervals and the n behind them. Every number is read from
the run folder; nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import config as config_mod
from . import soundness
from .data.split import split_summary
from .folders import Run
from .stats import fmt, too_wide
from .version import __version__

SEG_KEYS = ("dice_pos", "dice_kaggle", "iou", "iou_pos", "pixel_accuracy")
CLS_KEYS = ("roc_auc", "average_precision", "sensitivity", "specificity", "ece")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _weights_words(setting: str | None, record: dict | None) -> str:
    """The encoder weights a run began from, with the file's SHA-256 and what of it loaded."""
    if not setting:
        return "none (random init)"
    if not record:
        return setting
    words = f"{record['path']} (sha256 {record['sha256']}, {record['tensors_loaded']} of {record['tensors_expected']} tensors loaded"
    return words + (f"; not loaded: {', '.join(record['not_loaded'][:5])})" if record.get("n_not_loaded") else ")")


def limitations(run: Run, metrics: dict, stage2: dict | None) -> list[str]:
    """Known limits of this model, from what the run folder says about it."""
    cfg = run.read_config()
    out = ["Research software, not a medical device: not for diagnosis, triage or any clinical decision."]
    if not cfg.model.encoder_weights:
        out.append("No pretrained weights: the encoder was trained from scratch on this data only.")
    sources = [s["source"] for s in metrics.get("split_counts", []) if "source" in s]
    if len(set(sources)) > 1:
        out.append(f"Mixed sources ({', '.join(sorted(set(sources)))}): positives and negatives may differ by collection, "
                   "so part of what is learned may be the collection; see the per-source metrics"
                   + (f" and the shortcut check (source AUC {stage2['source_check']['source_auc']:.2f} vs label AUC "
                      f"{stage2['source_check']['label_auc']:.2f})" if stage2 and stage2.get("source_check") else "") + ".")
    note = too_wide(int(metrics.get("n_positive", 0) or 0))
    if note:
        out.append(f"Segmentation metrics: {note}.")
    if stage2 and too_wide(int(stage2.get("after", {}).get("n_positive", 10))):
        out.append(f"Classification metrics: {too_wide(int(stage2['after']['n_positive']))}.")
    out += list(metrics.get("warnings", []))
    if stage2:
        out += [f"Classifier: {line}." for line in soundness.of_summary(stage2)]
    if stage2 and stage2.get("source_check", {}).get("warning"):
        out.append(stage2["source_check"]["warning"].capitalize() + ".")
    return out


def model_card(run: Run) -> str:
    """The card of a run (stage 1, and stage 2 when it has a classifier)."""
    cfg = run.read_config()
    meta = run.weights_meta()
    metrics = json.loads(run.metrics_path.read_text()) if run.metrics_path.is_file() else {}
    summary, _, _ = run.read_stage2_record() if run.has_classifier() else (None, [], None)
    split = run.read_split()
    counts = split_summary(split) if split is not None else pd.DataFrame()
    sources = [cfg.data.path or "synthetic phantoms (pneumoscope synth)", *cfg.data.extra_paths]
    ci = metrics.get("ci95", {})
    seg = pd.DataFrame([{"metric": k, "value [95 % interval]": fmt(metrics.get(k), ci.get(k), 4)} for k in SEG_KEYS
                        if metrics.get(k) is not None])
    d, t, lo, m = cfg.data, cfg.train, cfg.loss, cfg.model
    fw = (summary or {}).get("feature_weights")
    phi_from = f" from the local file {fw['path']}, sha256 {fw['sha256']}" if fw else ""
    stage2_line = ("\n  Stage 2: features (phi = " + summary["feature_extractor"] + phi_from + ") of the image and of the predicted "
                   "mask, with mask\n  statistics and metadata, classified by a tuned XGBoost model into P(pneumothorax).") if summary else ""
    card = f"""---
library_name: pneumoscope
license: mit
tags: [medical-imaging, chest-x-ray, pneumothorax, segmentation, research-only]
pipeline_tag: image-segmentation
base_model: none
---

# Model card: {run.root.name} ({m.encoder} U-Net{' + XGBoost stage 2' if summary else ''})

## Model details
- **What it is.** Stage 1 of pneumoscope's dual-stage system: a U-Net (segmentation-models-pytorch) with a
  {m.encoder} encoder that maps a chest radiograph to a per-pixel pneumothorax probability.{stage2_line}
- **Version.** pneumoscope {__version__}; weights id `{meta['weights_id']}` (in the header of `{run.weights_path().name}`;
  derived files carry it too).
- **Developed with.** PyTorch, segmentation-models-pytorch, XGBoost, scikit-learn; MIT licence.

## Uses
- **Intended use.** Research: reproducing and extending the method, studying failure modes, comparing
  recipes on labelled data, producing masks and probabilities for reader studies with a radiologist in the loop.
- **Out of scope.** Any clinical use: diagnosis, triage, worklist prioritisation, or reporting without a
  radiologist. Not a medical device; not cleared or approved by any regulator.

## Bias, risks and limitations
""" + "".join(f"- {line}\n" for line in limitations(run, metrics, summary)) + f"""
## Training details
- **Data sources.** {'; '.join(f'`{s}`' for s in sources)}.
- **Reference standard.** Pixel masks drawn for SIIM-ACR (where a source has them); image-level labels
  (e.g. NIH report-mined labels, which are noisy) count a normal as an empty mask.
- **Split** (by patient where the patient is known; seed {d.split_seed}): images of each source and kind per part.

{_md_table(counts)}
- **Preprocessing.** Decoded to one grey channel in [0, 1] (DICOM: modality LUT, VOI LUT or window,
  MONOCHROME1 inverted), resized to {d.size} x {d.size} px, stored as uint8, standardised per image.
  Augmentation: {'small shift/scale/rotate and brightness/contrast' if d.augment else 'none'}{', horizontal flip' if d.hflip else ''}.
- **Recipe.** {t.epochs} epochs (early stopping on validation loss, patience {t.early_stopping_patience},
  not before epoch {t.min_epochs}), batch {t.batch_size}, Adam lr {t.lr:g} ({t.schedule} schedule,
  warm-up {t.warmup_epochs:g} epoch(s)), loss {lo.bce:g} x BCE + {lo.dice:g} x Dice + {lo.focal:g} x Focal
  (gamma {lo.focal_gamma:g}, alpha {lo.focal_alpha}), positive share per epoch:
  {d.positive_fraction if d.positive_fraction is not None else (f'at least {d.positive_floor}' if d.positive_floor else "the data's own")};
  post-processing rule searched on validation for {t.rule_objective}; encoder weights: {_weights_words(m.encoder_weights, metrics.get('initial_weights'))};
  seed {t.seed}, deterministic float32 on CPU.
  Trained for {metrics.get('epochs_run', '?')} epochs; best epoch {metrics.get('best_epoch', '?')}.

## Evaluation
- **Stage 1** on the {metrics.get('split', 'test')} split: {metrics.get('n_images', '?')} images
  ({metrics.get('n_positive', '?')} with a pneumothorax mask, {metrics.get('n_patients', '?')} patients); threshold {t.threshold};
  95 % bootstrap intervals, patients resampled ({metrics.get('bootstrap', {}).get('draws', '?')} draws, seed
  {metrics.get('bootstrap', {}).get('seed', '?')}).

{_md_table(seg)}"""
    if summary:
        a = summary["after"]
        cls = pd.DataFrame([{"metric": k, "value [95 % interval]": fmt(a.get(k), a.get("ci95", {}).get(k), 4)} for k in CLS_KEYS])
        card += f"""
- **Stage 2** on {a.get('n_images', summary.get('n_eval'))} evaluation images ({a.get('n_positive', '?')} pneumothorax),
  threshold {summary['threshold']:.4f} ({summary['threshold_rule']}); {summary['leakage']}

{_md_table(cls)}"""
    card += f"""
## How to use
```python
from pneumoscope import load_run
model = load_run("{run.root}")
result = model.predict("scan.dcm")   # .mask .prob .p_pneumothorax .decision
```
```bash
pneumoscope predict --run {run.root} scans/ --out predictions/
```

## Configuration
```yaml
{config_mod.dump(cfg).strip()}
```
"""
    return card


def write_model_card(run: Run, also: Path | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into the run (and a copy at ``also``, e.g. the study folder)."""
    text = model_card(run)
    path = run.write_model_card(text)
    if also is not None:
        from .files import atomic_write

        atomic_write(also, text)
    return path
