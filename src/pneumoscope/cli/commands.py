"""What each command does: reads its arguments, calls the library, prints what it says. Errors a
user can cause are :class:`PneumoscopeError`; :func:`pneumoscope.cli.main` prints them as one line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .. import config as config_mod
from ..stats import describe, too_wide
from .tables import print_sizes, print_table1, print_table2

SEG_KEYS = ("loss", "iou", "iou_pos", "dice_kaggle", "dice_pos", "pixel_accuracy")


def _config_from(args: argparse.Namespace, default: str | None = None) -> config_mod.Config:
    """The config of a training command: ``--config``, else ``real`` when ``--data`` names real data and
    ``default`` (the demo's phantoms) when it does not; then the flags and ``--set`` overrides."""
    overrides = list(args.overrides)
    data = getattr(args, "data", None)
    if data and default == "demo":
        default = "real"  # the demo's recipe is tuned on phantoms; real radiographs get the one measured on them
    if isinstance(data, list):  # --data repeated: the first folder, and the others trained on with it
        overrides.insert(0, f"data.extra_paths={json.dumps(data[1:])}")
        args.data = data[0]
    for flag, key in (("data", "data.path"), ("layout", "data.layout"), ("encoder", "model.encoder"),
                      ("size", "data.size"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("device", "train.device"), ("init_from", "model.init_from"),
                      ("freeze_encoder_epochs", "train.freeze_encoder_epochs"), ("folds", "data.folds")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    if getattr(args, "encoders", None):  # run --encoder, repeated: the encoders of Table 1
        overrides.insert(0, f"encoders={json.dumps(args.encoders)}")
    if getattr(args, "skip_bad", False):
        overrides.insert(0, "data.skip_bad=true")
    return config_mod.load(args.config or default, overrides)


def cmd_synth(args: argparse.Namespace) -> None:
    from ..data.synth import generate

    table = generate(args.out, args.n, args.size, args.seed, args.positive_rate)
    print(f"wrote {len(table)} phantoms ({int(table.has_pneumo.sum())} with pneumothorax) to {args.out}; "
          f"preview: {Path(args.out) / 'preview.png'}")


def cmd_convert(args: argparse.Namespace) -> None:
    from ..data.convert import siim_to_png

    table, bad = siim_to_png(args.dicom, args.rle, args.out, args.skip_bad)
    print(f"wrote {len(table)} images ({int(table.has_pneumo.sum())} positive) to {args.out}"
          + (f"; skipped {len(bad)}: " + "; ".join(str(b) for b in bad) if bad else ""))


def cmd_train_seg(args: argparse.Namespace) -> None:
    from ..stage1.pipeline import train_seg

    cfg = _config_from(args, "demo")
    if args.config is None:
        print(f"config: {'real (the recipe for real radiographs)' if args.data else 'demo (synthetic phantoms)'}; "
              "--config names another (paper, siim-winners, or a file)", flush=True)
    t0 = time.perf_counter()
    metrics = train_seg(cfg, args.out, resume=args.resume)
    if metrics:
        print(f"trained {cfg.model.encoder} in {time.perf_counter() - t0:.0f}s; {metrics['split']} metrics: "
              + describe(metrics, SEG_KEYS) + f"; run folder: {args.out}")
        if "postprocessed" in metrics:
            pp = metrics["postprocessed"]
            print("  with post-processing " + describe(pp, ("iou", "iou_pos", "dice_kaggle", "dice_pos")) + f" (rule {pp['rule']})")
        print(f"  drawing nothing on every image would score dice_kaggle {metrics['empty_baseline']:.3f}")
        print_sizes(metrics)
        for line in metrics.get("warnings", []):
            if not line.startswith("epoch "):  # those were said while training
                print(f"warning: {line}")


def cmd_evaluate_seg(args: argparse.Namespace) -> None:
    from ..stage1.pipeline import evaluate_seg

    m = evaluate_seg(args.run, args.data, args.split, args.layout, args.skip_bad, args.out)
    print(f"{m['split']} ({m['n_images']} images, {m['n_positive']} positive): {describe(m, SEG_KEYS)}; wrote {m['path']}")
    if "postprocessed" in m:
        pp = m["postprocessed"]
        print("with post-processing " + describe(pp, ("iou", "iou_pos", "dice_kaggle", "dice_pos")) + f" (rule {pp['rule']})")
    for line in m.get("warnings", []):
        print(f"warning: {line}")


def cmd_evaluate_cls(args: argparse.Namespace) -> None:
    from ..study.evaluate_cls import evaluate_cls

    m = evaluate_cls(args.run, args.data, args.layout, args.skip_bad, args.out, args.backend,
                     say=lambda line: print(line, flush=True))
    print(f"{m['n_images']} images ({m['n_positive']} pneumothorax, {m['n_patients']} patients"
          + (f"; {m['n_left_out_seen']} left out: the run trained on them" if m["n_left_out_seen"] else "") + "): "
          + describe(m, ("roc_auc", "average_precision", "sensitivity", "specificity", "ece"), with_n=False)
          + f" at threshold {m['threshold']:.4f}" + (f"; {too_wide(m['n_positive'])}" if too_wide(m["n_positive"]) else "")
          + f" (stage 1 on {m['backend']})")
    for line in m["warnings"]:
        print(f"WARNING: {line}")
    print(f"wrote {m['path']}, {m['per_image']} and {m['reliability_plot']}")


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
    from ..inference.options import PredictOptions
    from ..inference.predict import predict_files

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
    _say_disagreements(Path(args.out))


def _say_disagreements(out: Path) -> None:
    """One line when the two stages disagree on images of the folder: how often, in words."""
    from ..inference.prediction_folder import PredictionFolder

    rows = PredictionFolder(out).rows()
    words = [r.get("disagreement", "") for r in rows]
    counts = {w: words.count(w) for w in sorted(set(words)) if w}
    if counts:
        print(f"the stages disagree on {sum(counts.values())} of {len(rows)} images: "
              + ", ".join(f"{n} {w}" for w, n in counts.items()) + " (the disagreement column of predictions.csv)")


def _say_per_file(lines: list[str], where: str, most: int = 20) -> None:
    """One line per file on stderr (at most ``most``, then how many more and where they are listed)."""
    for line in lines[:most]:
        print(line, file=sys.stderr)
    if len(lines) > most:
        print(f"... and {len(lines) - most} more (all in {where})", file=sys.stderr)


def _dicom_objects(text: str) -> tuple[str, ...]:
    from ..dicom_results.algorithm import parse_kinds

    return parse_kinds(text)


def cmd_export(args: argparse.Namespace) -> None:
    from ..inference.export import export_onnx

    path, report = export_onnx(args.run, args.out)
    worst = max(c["max_abs_diff"] for c in report["checks"].values())
    print(f"exported {path}; parity with PyTorch float32: max |prob diff| {worst:.2e} (< {report['tolerance']}), masks equal")
    if args.no_precision:
        return
    from ..inference.options import PredictOptions
    from ..inference.precision import judge, table
    from ..inference.predictor import Predictor

    pred = Predictor(args.run, PredictOptions(precision="fp32"))
    with pred.run.writing("export (precision judgement)"):
        record = judge(pred.run, pred.model, pred.device, pred.stage2, say=lambda line: print(line, flush=True))
    for line in table(record):
        print(line)


def cmd_run(args: argparse.Namespace) -> None:
    from ..study.run import run_study

    cfg = _config_from(args, "demo")
    out = args.out or default_study_folder(cfg)
    if args.out is None:
        print(f"study folder: {out} (--out names another)", flush=True)
    data = ", ".join([str(cfg.data.path), *map(str, cfg.data.extra_paths)]) if cfg.data.path else "the synthetic phantoms"
    print(f"config: {args.config or ('real (the recipe for real radiographs)' if args.data else 'demo (synthetic phantoms)')}; "
          f"data: {data}; encoders: {', '.join(cfg.encoders)}; up to {cfg.train.epochs} epochs at {cfg.data.size} px; "
          "images are decoded and cached first (once per size), then each encoder trains", flush=True)
    t0 = time.perf_counter()
    m = run_study(cfg, out)
    print_table1(m["table1"], m.get("notes", []), cfg.data.folds)
    print(f"best encoder (validation IoU): {m['best_encoder']}")
    print_sizes(m["best_metrics"], f"{m['best_encoder']}: ")
    print_table2(m["stage2"])
    print(f"finished in {time.perf_counter() - t0:.0f}s; report: {m['report']}")


def default_study_folder(cfg: config_mod.Config) -> str:
    """``runs/demo`` for the phantoms, ``runs/<first data folder's name>`` for data of the user's."""
    if not cfg.data.path:
        return "runs/demo"
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(cfg.data.path).expanduser().resolve().name).strip("._") or "data"
    return f"runs/{name}" if name != "demo" else "runs/demo-data"


def cmd_train_cls(args: argparse.Namespace) -> None:
    from ..folders import Run
    from ..stage2.pipeline import train_cls

    run = Run(args.run)
    base = config_mod.to_dict(run.read_config())
    if args.data:
        base["stage2"]["data"] = args.data
    cfg = config_mod.from_dict(config_mod.apply_overrides(base, args.overrides))
    cfg = dataclasses.replace(cfg, stage2=dataclasses.replace(cfg.stage2, layout=args.layout or cfg.stage2.layout))
    res = train_cls(run, cfg)
    print_table2(res.summary)
    print(f"{res.summary['leakage']}\nwrote {run.stage2_dir}")


def cmd_upgrade_run(args: argparse.Namespace) -> None:
    from ..upgrade import upgrade_run

    for line in upgrade_run(args.run, args.trust_pickles):
        print(f"converted {line}")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ..serve.app import create_app
    from ..serve.auth import check_exposure, read_token, token_file_warning
    from ..serve.port import listen

    _quiet_dicom_libraries()
    token = read_token(args.token_file)
    exposed = token_file_warning(args.token_file)
    if exposed:
        print(f"warning: {exposed}", file=sys.stderr)
    check_exposure(args.host, token, args.insecure_no_token)
    sock = listen(args.host, args.port)  # first: a bad or taken port fails before the model loads
    try:
        from ..inference.options import PredictOptions
        from ..inference.predictor import Predictor

        say = lambda line: print(line, flush=True)  # noqa: E731
        pred = Predictor(args.run, PredictOptions(backend=args.backend, max_megapixels=args.max_megapixels), say)
        app = create_app(args.run, args.max_upload_mb, args.keep_uploads, predictor=pred,
                         max_megapixels=args.max_megapixels, token=token, say=say)
        for line in pred.warm_up():  # before the first request: export, precision judgement, backend choice
            say(line)
    except BaseException:
        sock.close()
        raise
    import logging

    from ..serve.access import LOG as ACCESS

    handler = logging.StreamHandler(sys.stderr)  # the access log (serve/access.py): who asked for what, when; no patient data
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)
    ACCESS.propagate = False  # once, on stderr (a library may have configured the root logger too)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    print(f"serving {args.run} on http://{args.host}:{sock.getsockname()[1]}/ (viewer at /, API docs at /docs"
          + ("; every request needs the token)" if token else "; no token)"), flush=True)
    server.run(sockets=[sock])


def cmd_listen(args: argparse.Namespace) -> None:
    import logging

    from ..dicom_results.algorithm import parse_kinds
    from ..inference.options import PredictOptions
    from ..inference.predictor import Predictor
    from ..node.destinations import Destination
    from ..node.service import Node, NodeOptions

    opts = NodeOptions(ae_title=args.ae_title, host=args.host, port=args.port, allow=tuple(args.allow_aet or ()),
                       destinations=tuple(Destination.parse(t) for t in args.send_to or ()), quiet=args.quiet_seconds,
                       kinds=parse_kinds(args.dicom_objects), retry=args.retry_seconds, log_phi=args.log_phi).check()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("pynetdicom", "dicomweb_client"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    _quiet_dicom_libraries()
    from ..node import LOG

    say = logging.getLogger(LOG).info  # the node's log (stderr); stdout says only where it listens
    pred = Predictor(args.run, PredictOptions(backend=args.backend, device=args.device), say)
    for line in pred.warm_up():  # before the first study: export, precision judgement, backend choice
        say(line)
    node = Node(args.run, args.spool, opts, pred)
    port = node.start()
    line = (f"listening as {opts.ae_title} on {opts.host}:{port} (spool {args.spool}); results ({', '.join(opts.kinds)}) to "
            f"{', '.join(str(d) for d in opts.destinations)}; allowed callers: {', '.join(opts.allow) or 'any'}")
    print(line, flush=True)  # stdout: for whoever started the node (a script waits for this line)
    say(line)  # the log: with its time and level, like every other line of the node
    node.serve()
