"""Every file name in a run folder, which of them derive from its weights, and what to say and do when
one of those is stale or damaged. Nothing here reads or writes a file."""

from __future__ import annotations

CONFIG = "config.yaml"
SPLIT = "split.csv"
HISTORY = "history.csv"
METRICS = "metrics.json"
SKIPPED = "skipped.csv"
POSTPROCESS = "postprocess.json"
ONNX = "model.onnx"
EXPORT_REPORT = "export.json"
BACKEND_MEMO = "backend.json"
BACKEND_PROBE = "backend-probe.npz"
PRECISION = "precision.json"  # which reduced precisions the validation images accept (inference/precision.py)
INT8_ONNX = "model-int8.onnx"
STAGE2 = "stage2"
BEST = "best.safetensors"
LAST = "last.pt"
S2_CLASSIFIER = "classifier.json"
S2_BOOSTER = "booster-{}.ubj"
S2_SUMMARY = "stage2.json"
S2_FEATURE_NAMES = "feature_names.json"
S2_TABLE2 = "table2.csv"
S2_FEATURES = "features.npz"
MODEL_CARD = "MODEL_CARD.md"
PER_IMAGE = "per_image.csv"
FOLDS = "folds"  # a cross-validated run's fold models: folds/fold-<k>/, each a run folder
LEGACY_BEST, LEGACY_CLASSIFIER = "best.pt", "classifier.joblib"  # pickles written by pneumoscope 0.1
# What was derived from a run's weights: removed when new weights replace them.
DERIVED = (ONNX, EXPORT_REPORT, BACKEND_MEMO, BACKEND_PROBE, POSTPROCESS, STAGE2, MODEL_CARD, PRECISION, INT8_ONNX)
SPLIT_NAMES = ("train", "val", "test")

# Derived files that change answers: what to say when they belong to other weights, and what to
# do when they are damaged. (The export, backend memo and probe are caches, rebuilt silently.)
STALE_NOTE = {POSTPROCESS: "the post-processing rule was searched for other weights: the plain threshold is used "
                           "(rerun train-seg to search it again)",
              S2_SUMMARY: "stage 2 was fitted on other weights: no P(pneumothorax) (rerun train-cls)"}
REMEDY = {POSTPROCESS: "delete it to use the plain threshold, or rerun train-seg",
          S2_SUMMARY: "rerun train-cls", S2_CLASSIFIER: "rerun train-cls", S2_FEATURE_NAMES: "rerun train-cls",
          EXPORT_REPORT: "delete it (the export is made again when needed)",
          BACKEND_MEMO: "delete it (the backend is chosen again when needed)",
          PRECISION: "delete it (reduced precision is judged again when needed, or by pneumoscope export)",
          BEST: "train again into this folder", SPLIT: "train again into this folder"}
