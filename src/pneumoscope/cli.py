"""Command line: parses arguments and calls the library, nothing else.

Errors a user can cause are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from . import config as config_mod
from .errors import PneumoscopeError, one_line
from .stats import describe, fmt, too_wide
from .version import __version__

SEG_KEYS = ("loss", "iou", "iou_pos", "dice_kaggle", "dice_pos", "pixel_accuracy")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file, or a bundled name: demo, real, paper, siim-winners "
                   "(default: real with --data, demo without)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=5e-4 (repeatable)")


def _config_from(args: argparse.Namespace, default: str | None = None) -> config_mod.Config:
    """The config of a training command: ``--config``, else ``real`` when ``--data`` names real data and
    ``default`` (the demo's phantoms) when it does not; then the flags and ``--set`` overrides."""
    overrides = list(args.overrides)
    data = getattr(args, "data", None)
    if data and default == "demo":
        default = "real"  # the demo's recipe is tuned on phantoms; real radiographs get the one measured on them
    if isinstance(data, list):  # --data repeated: the first folder, and the others trained on with it
        import json

        overrides.insert(0, f"data.extra_paths={json.dumps(data[1:])}")
        args.data = data[0]
    for flag, key in (("data", "data.path"), ("layout", "data.layout"), ("encoder", "model.encoder"),
                      ("size", "data.size"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("device", "train.device"), ("init_from", "model.init_from"),
                      ("freeze_encoder_epochs", "train.freeze_encoder_epochs")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    if getattr(args, "skip_bad", False):
        overrides.insert(0, "data.skip_bad=true")
    return config_mod.load(args.config or default, overrides)


def cmd_synth(args: argparse.Namespace) -> None:
    from .data.synth import generate

    table = generate(args.out, args.n, args.size, args.seed, args.positive_rate)
    print(f"wrote {len(table)} phantoms ({int(table.has_pneumo.sum())} with pneumothorax) to {args.out}; "
          f"preview: {Path(args.out) / 'preview.png'}")


def cmd_convert(args: argparse.Namespace) -> None:
    from .data.convert import siim_to_png

    table, bad = siim_to_png(args.dicom, args.rle, args.out, args.skip_bad)
    print(f"wrote {len(table)} images ({int(table.has_pneumo.sum())} positive) to {args.out}"
          + (f"; skipped {len(bad)}: " + "; ".join(str(b) for b in bad) if bad else ""))


def cmd_train_seg(args: argparse.Namespace) -> None:
    from .stage1.pipeline import train_seg

    cfg = _config_from(args, "demo")
    if args.config is None:
        print(f"config: {'real (the recipe for real radiographs)' if args.data else 'demo (synthetic phantoms)'}; "
              "--config names another (paper, siim-winners, or a file)", flush=True)
    t0 = time.perf_counter()
    metrics = train_seg(cfg, args.out, resume=args.resume)
    if metrics:
        print(f"trained {cfg.model.encoder} in {time.perf_counter() - t0:.0f}s; {metrics['split']} metrics: "
              + describe(metrics, SEG_KEYS) + f"; run folder: {args.out}")
        for line in metrics.get("warnings", []):
            if not line.startswith("epoch "):  # those were said while training
                print(f"warning: {line}")


def cmd_evaluate_seg(args: argparse.Namespace) -> None:
    from .stage1.pipeline import evaluate_seg

    m = evaluate_seg(args.run, args.data, args.split, args.layout, args.skip_bad, args.out)
    print(f"{m['split']} ({m['n_images']} images, {m['n_positive']} positive): {describe(m, SEG_KEYS)}; wrote {m['path']}")
    if "postprocessed" in m:
        pp = m["postprocessed"]
        print("with post-processing " + describe(pp, ("iou", "iou_pos", "dice_kaggle", "dice_pos")) + f" (rule {pp['rule']})")
    for line in m.get("warnings", []):
        print(f"warning: {line}")


def cmd_evaluate_cls(args: argparse.Namespace) -> None:
    from .study.evaluate_cls import evaluate_cls

    m = evaluate_cls(args.run, args.data, args.layout, args.skip_bad, args.out, args.backend,
                     say=lambda line: print(line, flush=True))
    print(f"{m['n_images']} images ({m['n_positive']} pneumothorax, {m['n_patients']} patients"
          + (f"; {m['n_left_out_seen']} left out: the run trained on them" if m["n_left_out_seen"] else "") + "): "
          + describe(m, ("roc_auc", "average_precision", "sensitivity", "specificity", "ece"), with_n=False)
          + f" at threshold {m['threshold']:.4f}" + (f"; {too_wide(m['n_positive'])}" if too_wide(m["n_positive"]) else ""))
    print(f"wrote {m['path']} and {m['reliability_plot']}")


def _quiet_dicom_libraries() -> None:
    """pydicom's and highdicom's remarks on the values of the files read (one per value, repeated for
    each object made) are not shown: what changes an answer or a result is said in pneumoscope's own
    lines (the DICOM notes, skipped files)."""
    import logging
    import warnings

    for name in ("pydicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning, module=rf"{name}(\.|$)")


def cmd_predict(args: argparse.Namespace) -> None:
    from .inference.archive import predict_files
    from .inference.options import PredictOptions

    _quiet_dicom_libraries()
    opts = PredictOptions(backend=args.backend, precision=args.precision, compile=args.compile, tta=args.tta,
                          postprocess=not args.no_postprocess, batch_size=args.batch_size, workers=args.workers,
                          threads=args.threads,
                          overlay_size=args.overlay_size, max_megapixels=args.max_megapixels,
                          gradcam=args.gradcam, submission=args.submission, skip_bad=args.skip_bad, device=args.device,
                          resume=not args.no_resume, dicom_out=args.dicom_out,
                          dicom_objects=_dicom_objects(args.dicom_objects))
    r = predict_files(args.run, args.inputs, args.out, opts, say=lambda line: print(line, flush=True))
    if not r.get("main", True):  # another process of a torchrun job: rank 0 speaks for the job
        return
    for note in r["notes"]:
        print(note)
    _say_per_file([f"skipped: {s['reason']}" for s in r["skipped_files"]], "skipped.csv")
    _say_per_file([f"{f}: {note}" for f, note in r["dicom_notes"]], "the dicom_note column of predictions.csv")
    share = f", {r['model_seconds'] / r['seconds']:.0%} of it in the model" if r["seconds"] > 0 and r["predicted"] else ""
    print(f"predicted {r['predicted']} images ({r['images_per_second']:.2f} img/s{share})"
          + (f", {r['already_done']} already done" if r["already_done"] else "")
          + (f", skipped {r['skipped']} (see skipped.csv)" if r["skipped"] else "")
          + f"; wrote {Path(args.out) / 'predictions.csv'}" + (f" and {args.submission}" if args.submission else "")
          + (f"; DICOM results ({', '.join(_dicom_objects(args.dicom_objects))}) in {args.dicom_out}" if args.dicom_out else ""))


def _say_per_file(lines: list[str], where: str, most: int = 20) -> None:
    """One line per file on stderr (at most ``most``, then how many more and where they are listed)."""
    for line in lines[:most]:
        print(line, file=sys.stderr)
    if len(lines) > most:
        print(f"... and {len(lines) - most} more (all in {where})", file=sys.stderr)


def _dicom_objects(text: str) -> tuple[str, ...]:
    from .results.identity import parse_kinds

    return parse_kinds(text)


def cmd_export(args: argparse.Namespace) -> None:
    from .inference.export import export_onnx

    path, report = export_onnx(args.run, args.out)
    worst = max(c["max_abs_diff"] for c in report["checks"].values())
    print(f"exported {path}; parity with PyTorch float32: max |prob diff| {worst:.2e} (< {report['tolerance']}), masks equal")
    if args.no_precision:
        return
    from .inference.options import PredictOptions
    from .inference.precision import judge, table
    from .inference.predictor import Predictor

    pred = Predictor(args.run, PredictOptions(precision="fp32"))
    with pred.run.writing("export (precision judgement)"):
        record = judge(pred.run, pred.model, pred.device, pred.stage2, say=lambda line: print(line, flush=True))
    for line in table(record):
        print(line)


def cmd_run(args: argparse.Namespace) -> None:
    from .study.run import run_study

    cfg = _config_from(args, "demo")
    out = args.out or default_study_folder(cfg)
    if args.out is None:
        print(f"study folder: {out} (--out names another)", flush=True)
    t0 = time.perf_counter()
    m = run_study(cfg, out)
    print("Table 1 (test split; 95 % bootstrap intervals over patients):")
    cols = ["encoder", "loss", "iou", "pixel_accuracy", "iou_pos", "dice_kaggle", "dice_pos"]
    print("  " + "  ".join(f"{c:<18}" if c == "encoder" else f"{c:>22}" for c in cols))
    for row in m["table1"]:
        print("  " + "  ".join(f"{row[c]:<18}" if c == "encoder" else f"{fmt(row[c], [row.get(c + '_lo'), row.get(c + '_hi')]):>22}"
                               for c in cols) + f"  (n = {row['n_images']}, {row['n_positive']} positive)")
    for line in m.get("notes", []):
        print(f"  note: {line}")
    print(f"best encoder (validation IoU): {m['best_encoder']}")
    _print_table2(m["stage2"])
    print(f"finished in {time.perf_counter() - t0:.0f}s; report: {m['report']}")


def default_study_folder(cfg: config_mod.Config) -> str:
    """``runs/demo`` for the phantoms, ``runs/<first data folder's name>`` for data of the user's."""
    if not cfg.data.path:
        return "runs/demo"
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(cfg.data.path).expanduser().resolve().name).strip("._") or "data"
    return f"runs/{name}" if name != "demo" else "runs/demo-data"


def _print_table2(s2: dict) -> None:
    print("Table 2 (classifier, evaluation images; 95 % bootstrap intervals over patients):")
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


def cmd_train_cls(args: argparse.Namespace) -> None:
    from .runs import Run
    from .stage2.pipeline import train_cls

    run = Run(args.run)
    base = config_mod.to_dict(run.read_config())
    if args.data:
        base["stage2"]["data"] = args.data
    cfg = config_mod.from_dict(config_mod.apply_overrides(base, args.overrides))
    cfg = dataclasses.replace(cfg, stage2=dataclasses.replace(cfg.stage2, layout=args.layout or cfg.stage2.layout))
    res = train_cls(run, cfg)
    _print_table2(res.summary)
    print(f"{res.summary['leakage']}\nwrote {run.stage2_dir}")


def cmd_upgrade_run(args: argparse.Namespace) -> None:
    from .upgrade import upgrade_run

    for line in upgrade_run(args.run, args.trust_pickles):
        print(f"converted {line}")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .serve.app import create_app
    from .serve.auth import check_exposure, read_token, token_file_warning
    from .serve.listen import listen

    _quiet_dicom_libraries()
    token = read_token(args.token_file)
    exposed = token_file_warning(args.token_file)
    if exposed:
        print(f"warning: {exposed}", file=sys.stderr)
    check_exposure(args.host, token, args.insecure_no_token)
    sock = listen(args.host, args.port)  # first: a bad or taken port fails before the model loads
    try:
        from .inference.options import PredictOptions
        from .inference.predictor import Predictor

        say = lambda line: print(line, flush=True)  # noqa: E731
        pred = Predictor(args.run, PredictOptions(backend=args.backend, max_megapixels=args.max_megapixels), say)
        app = create_app(args.run, args.max_upload_mb, args.keep_uploads, predictor=pred,
                         max_megapixels=args.max_megapixels, token=token, say=say)
        for line in pred.warm_up():  # before the first request: export, precision judgement, backend choice
            say(line)
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    print(f"serving {args.run} on http://{args.host}:{sock.getsockname()[1]}/ (viewer at /, API docs at /docs"
          + ("; every request needs the token)" if token else "; no token)"), flush=True)
    server.run(sockets=[sock])


def cmd_listen(args: argparse.Namespace) -> None:
    import logging

    from .inference.options import PredictOptions
    from .inference.predictor import Predictor
    from .node.destinations import Destination
    from .node.service import Node, NodeOptions
    from .results.identity import parse_kinds

    opts = NodeOptions(ae_title=args.ae_title, host=args.host, port=args.port, allow=tuple(args.allow_aet or ()),
                       destinations=tuple(Destination.parse(t) for t in args.send_to or ()), quiet=args.quiet_seconds,
                       kinds=parse_kinds(args.dicom_objects), retry=args.retry_seconds, log_phi=args.log_phi).check()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("pynetdicom", "dicomweb_client"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    _quiet_dicom_libraries()
    from .node import LOG

    say = logging.getLogger(LOG).info  # the node's log (stderr); stdout says only where it listens
    pred = Predictor(args.run, PredictOptions(backend=args.backend, device=args.device), say)
    for line in pred.warm_up():  # before the first study: export, precision judgement, backend choice
        say(line)
    node = Node(args.run, args.spool, opts, pred)
    port = node.start()
    print(f"listening as {opts.ae_title} on {opts.host}:{port} (spool {args.spool}); results ({', '.join(opts.kinds)}) to "
          f"{', '.join(str(d) for d in opts.destinations)}; allowed callers: {', '.join(opts.allow) or 'any'}", flush=True)
    node.serve()


def finite(text: str) -> float:
    """An option's number: NaN and infinity are refused (``--quiet-seconds nan`` would never elapse)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (``pneumoscope predict: error: argument --x: ...``), exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (choices come from the registries that define them)."""
    from .data.layouts import LAYOUTS
    from .data.split import SPLITS
    from .inference.options import BACKENDS, PRECISION_CHOICES, TTA_MODES

    layouts = ["auto", *LAYOUTS]
    p = Parser(prog="pneumoscope", description="Pneumothorax segmentation and detection in chest X-rays.")
    p.add_argument("--version", action="version", version=f"pneumoscope {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("synth", help="write synthetic chest-radiograph phantoms (Kaggle PNG layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--positive-rate", type=finite, default=0.5)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("convert", help="SIIM original (DICOM + train-rle.csv) -> Kaggle PNG layout")
    s.add_argument("--dicom", required=True, help="folder with *.dcm (searched recursively)")
    s.add_argument("--rle", help="train-rle.csv (default: found under --dicom)")
    s.add_argument("--out", required=True)
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable items and list them")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("train-seg", help="train a U-Net (stage 1) and evaluate it on the test split")
    s.add_argument("--data", action="append", help="dataset folder (default: the synthetic phantoms); repeat it to "
                   "train on several together, e.g. SIIM masks plus a labelled folder whose normals are negatives")
    s.add_argument("--layout", choices=layouts)
    s.add_argument("--encoder")
    s.add_argument("--size", type=int)
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    s.add_argument("--init-from", metavar="RUN", help="start from RUN's best weights and keep its split (e.g. to continue "
                   "at a larger --size); the new run goes to --out")
    s.add_argument("--freeze-encoder-epochs", type=int, metavar="N", help="keep the encoder fixed for the first N epochs")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable items and list them in the run folder")
    _add_config_args(s)
    s.set_defaults(func=cmd_train_seg)

    s = sub.add_parser("evaluate-seg", help="segmentation metrics of a trained run, saved in the run folder")
    s.add_argument("--run", required=True)
    s.add_argument("--data", help="dataset folder (default: the run's own)")
    s.add_argument("--layout", default="auto", choices=layouts)
    s.add_argument("--split", default="auto", choices=["auto", *SPLITS, "all"])
    s.add_argument("--skip-bad", action="store_true")
    s.add_argument("--out", help="JSON file for the metrics (default: the run's own metrics file for its test split, "
                                 "else a file beside it named after the data and split)")
    s.set_defaults(func=cmd_evaluate_seg)

    s = sub.add_parser("evaluate-cls", help="stage 2 judged on a labelled folder: ROC AUC, AP, sensitivity, specificity, "
                       "calibration, each with a 95 %% interval")
    s.add_argument("--run", required=True, help="a run with a stage-2 classifier (train-cls output)")
    s.add_argument("--data", required=True, help="a labelled folder (labels.csv or normal/ + pneumothorax/), Kaggle or SIIM layout")
    s.add_argument("--layout", default="auto", choices=layouts)
    s.add_argument("--skip-bad", action="store_true")
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.add_argument("--out", help="JSON file for the metrics (default: RUN/cls-<data>.json, beside the run's own files)")
    s.set_defaults(func=cmd_evaluate_cls)

    s = sub.add_parser("predict", help="masks, overlays and predictions.csv for DICOM/PNG files or folders")
    s.add_argument("--run", required=True)
    s.add_argument("inputs", nargs="+", help="image files or folders")
    s.add_argument("--out", required=True)
    s.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: the fastest backend that matches float32 on this machine")
    s.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto: float32, or a reduced precision (bf16, int8) the run's validation images accepted "
                   "(judged once per run, see pneumoscope export); naming one forces it and says what validation said")
    s.add_argument("--compile", action="store_true", help="torch.compile the torch backend")
    s.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation")
    s.add_argument("--no-postprocess", action="store_true", help="plain 0.5 threshold instead of the run's searched rule")
    s.add_argument("--gradcam", action="store_true", help="also write Grad-CAM heatmaps (a visual aid)")
    s.add_argument("--submission", help="write a SIIM submission CSV (ImageId,EncodedPixels)")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--workers", type=int, help="decoding threads (default: one per two cores)")
    s.add_argument("--threads", type=int, help="threads of the network (default: PyTorch's and ONNX Runtime's own; "
                   "under torchrun: the cores shared among the processes on the machine)")
    s.add_argument("--max-megapixels", type=finite, default=178.95697, metavar="MP",
                   help="largest image, refused from its header before decoding (default: Pillow's 179 megapixels)")
    s.add_argument("--overlay-size", type=int, default=512, metavar="PX",
                   help="long side of the overlay pictures (default 512; 0: no overlays; masks are always full size)")
    s.add_argument("--device", default="auto")
    s.add_argument("--dicom-out", metavar="DIR", help="also write DICOM results of DICOM inputs into DIR: SEG, "
                   "Comprehensive 3D SR, burned-in overlay (docs/dicom.md)")
    s.add_argument("--dicom-objects", default="seg,sr,sc", metavar="KINDS",
                   help="which DICOM results, comma-separated: seg, sr, sc (default: all three)")
    s.add_argument("--no-resume", action="store_true", help="start over instead of skipping files already predicted")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable files and list them in OUT/skipped.csv")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("serve", help="HTTP API (POST /predict) and web viewer for a trained run")
    s.add_argument("--run", required=True)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-upload-mb", type=finite, default=50.0, help="largest accepted upload (stopped while it streams in)")
    s.add_argument("--max-megapixels", type=finite, default=25.0,
                   help="largest accepted image, read from its header before decoding (default 25: radiographs up to 5000x5000)")
    s.add_argument("--keep-uploads", metavar="DIR", help="keep uploaded files in DIR (default: memory only)")
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.add_argument("--token-file", metavar="FILE", help="require this bearer token (the file's first line) on every request "
                   "but the viewer page; default: the PNEUMOSCOPE_TOKEN environment variable, if set")
    s.add_argument("--insecure-no-token", action="store_true", help="allow a --host beyond localhost without a token "
                   "(anyone who reaches the port sees the images)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("listen", help="a DICOM node: receive radiographs (C-STORE), send SEG/SR/overlay back",
                       description="Receive CR/DX radiographs as a DICOM Storage SCP, predict each study once no new "
                       "instance came for --quiet-seconds, and send its DICOM results (SEG, SR, burned-in overlay) to every "
                       "--send-to, with retries. Received instances and queued results live in --spool, so a node killed "
                       "and restarted loses nothing and sends nothing twice. Run it as a service with systemd (see "
                       "docs/dicom.md); it stops cleanly on SIGTERM.")
    s.add_argument("--run", required=True, help="a trained run (with stage 2 for P(pneumothorax))")
    s.add_argument("--spool", required=True, metavar="DIR", help="folder for received instances and queued results")
    s.add_argument("--ae-title", default="PNEUMOSCOPE", help="this node's AE title (default PNEUMOSCOPE)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112; 0 picks a free one)")
    s.add_argument("--allow-aet", action="append", metavar="AE", help="accept associations only from this calling AE "
                   "title (repeat it; default: any)")
    s.add_argument("--send-to", action="append", metavar="DEST", help="where results go: AE@host:port (C-STORE) or a "
                   "DICOMweb base URL (STOW-RS); repeat it for several")
    s.add_argument("--quiet-seconds", type=finite, default=5.0, help="predict a study once no instance came for this long")
    s.add_argument("--dicom-objects", default="seg,sr,sc", metavar="KINDS", help="which results: seg, sr, sc")
    s.add_argument("--retry-seconds", type=finite, default=2.0, help="first retry of a failed delivery (doubling, at most 300 s)")
    s.add_argument("--log-phi", action="store_true", help="put Study Instance UIDs in the log (default: digests only)")
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_listen)

    s = sub.add_parser("export", help="export a run's U-Net to ONNX with a parity check")
    s.add_argument("--run", required=True)
    s.add_argument("--format", default="onnx", choices=["onnx"])
    s.add_argument("--no-precision", action="store_true", help="skip judging bf16/int8 on the run's validation images")
    s.add_argument("--out", help="output file (default: in the run folder)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("upgrade-run", help="convert a run folder of pneumoscope 0.1 (pickles) to safe formats")
    s.add_argument("--run", required=True, help="the run folder to convert")
    s.add_argument("--trust-pickles", action="store_true", help="unpickle the old files where plain loading does not "
                   "suffice (the stage-2 classifier always needs it); unpickling can run code: only for folders you trust")
    s.set_defaults(func=cmd_upgrade_run)

    s = sub.add_parser("train-cls", help="stage 2: features + tuned XGBoost on a trained stage-1 run")
    s.add_argument("--run", required=True, help="a stage-1 run folder (train-seg output)")
    s.add_argument("--data", help="classification dataset (default: the run's val/test images)")
    s.add_argument("--layout", choices=layouts)
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set stage2.n_iter=50")
    s.set_defaults(func=cmd_train_cls)

    s = sub.add_parser("run", help="the whole study: Table 1 per encoder, stage 2, Table 2, HTML report")
    s.add_argument("--data", action="append", help="dataset folder (default: the synthetic phantoms); repeat it to "
                   "train on several together, e.g. SIIM masks plus a labelled folder whose normals are negatives")
    s.add_argument("--layout", choices=layouts)
    s.add_argument("--size", type=int)
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--out", help="study folder (default: runs/demo for the phantoms, runs/<first --data folder's name> "
                   "for your data; a folder holding a study of other data is refused)")
    s.add_argument("--skip-bad", action="store_true")
    _add_config_args(s)
    s.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PneumoscopeError as exc:
        print(f"pneumoscope: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine said no (disk full, permissions, a vanished file): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pneumoscope: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pneumoscope: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
