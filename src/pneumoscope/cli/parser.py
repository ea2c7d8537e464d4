"""The argument parser: one function per command, in pipeline order, over shared flag groups; choices
come from the registries that define them."""

from __future__ import annotations

import argparse

from ..version import __version__
from . import commands as c


def layouts() -> list[str]:
    """The ``--layout`` choices: ``auto`` and every registered dataset layout."""
    from ..data.layouts import LAYOUTS

    return ["auto", *LAYOUTS]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file, or a bundled name: demo, real, paper, siim-winners "
                   "(default: real with --data, demo without)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=5e-4 (repeatable)")


def _training_flags(s: argparse.ArgumentParser) -> None:
    """The data and training flags train-seg and run share (each a config key; ``--set`` sets any other)."""
    s.add_argument("--data", action="append", help="dataset folder (default: the synthetic phantoms); repeat it to "
                   "train on several together, e.g. SIIM masks plus a labelled folder whose normals are negatives")
    s.add_argument("--layout", choices=layouts())
    s.add_argument("--size", type=int)
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--folds", type=int, metavar="K", help="cross-validation: K models on patient-grouped, stratified "
                   "folds, Table 1 on the out-of-fold predictions of every labelled image, the K models' ensemble as "
                   "the run's model (data.folds; default: one train/val/test split)")


def _fold_flag(s: argparse.ArgumentParser) -> None:
    """``--fold N``: one member of a cross-validated run instead of its ensemble."""
    s.add_argument("--fold", type=int, metavar="N", help="a cross-validated run's fold model N (RUN/folds/fold-N) "
                   "instead of the ensemble of all its folds")


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


class DefaultsShown(argparse.HelpFormatter):
    """Each option's default after its help, unless the help already says it (or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""  # argparse asks only for actions with help (build_parser gives the others theirs)
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (``pneumoscope predict: error: argument --x: ...``), exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _synth(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope synth``: phantoms."""
    s = sub.add_parser("synth", help="write synthetic chest-radiograph phantoms (Kaggle PNG layout)")
    s.add_argument("--out", required=True, help="folder to write (png_images/, png_masks/, the CSV, preview.png)")
    s.add_argument("--n", type=int, default=100, help="how many phantoms")
    s.add_argument("--size", type=int, default=256, help="side of each square phantom in pixels")
    s.add_argument("--seed", type=int, default=0, help="phantom i depends only on (seed, i)")
    s.add_argument("--positive-rate", type=finite, default=0.5, help="share of phantoms with a pneumothorax")
    s.set_defaults(func=c.cmd_synth)


def _convert(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope convert``: SIIM DICOM + RLE to PNG."""
    s = sub.add_parser("convert", help="SIIM original (DICOM + train-rle.csv) -> Kaggle PNG layout")
    s.add_argument("--dicom", required=True, help="folder with *.dcm (searched recursively)")
    s.add_argument("--rle", help="train-rle.csv (default: found under --dicom)")
    s.add_argument("--out", required=True)
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable items and list them")
    s.set_defaults(func=c.cmd_convert)


def _train_seg(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope train-seg``: stage 1."""
    s = sub.add_parser("train-seg", help="train a U-Net (stage 1) and evaluate it on the test split")
    _training_flags(s)
    s.add_argument("--encoder", help="the U-Net's encoder, e.g. resnet34, vgg16, inceptionresnetv2, xception "
                   "(default: the config's model.encoder)")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    s.add_argument("--init-from", metavar="RUN", help="start from RUN's best weights and keep its split (e.g. to continue "
                   "at a larger --size); the new run goes to --out")
    s.add_argument("--freeze-encoder-epochs", type=int, metavar="N", help="keep the encoder fixed for the first N epochs")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable items and list them in the run folder")
    _add_config_args(s)
    s.set_defaults(func=c.cmd_train_seg)


def _evaluate_seg(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope evaluate-seg``: stage 1 judged."""
    from ..data.split import SPLITS

    s = sub.add_parser("evaluate-seg", help="segmentation metrics of a trained run, saved in the run folder")
    s.add_argument("--run", required=True)
    _fold_flag(s)
    s.add_argument("--data", help="dataset folder (default: the run's own)")
    s.add_argument("--layout", default="auto", choices=layouts())
    s.add_argument("--split", default="auto", choices=["auto", *SPLITS, "all"])
    s.add_argument("--skip-bad", action="store_true")
    s.add_argument("--out", help="JSON file for the metrics (default: the run's own metrics file for its test split, "
                                 "else a file beside it named after the data and split)")
    s.set_defaults(func=c.cmd_evaluate_seg)


def _train_cls(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope train-cls``: stage 2."""
    s = sub.add_parser("train-cls", help="stage 2: features + tuned XGBoost on a trained stage-1 run")
    s.add_argument("--run", required=True, help="a stage-1 run folder (train-seg output)")
    s.add_argument("--data", help="classification dataset (default: the run's val/test images)")
    s.add_argument("--layout", choices=layouts())
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set stage2.n_iter=50")
    s.set_defaults(func=c.cmd_train_cls)


def _evaluate_cls(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope evaluate-cls``: stage 2 judged."""
    from ..inference.options import BACKENDS

    s = sub.add_parser("evaluate-cls", help="stage 2 judged on a labelled folder: ROC AUC, AP, sensitivity, specificity, "
                       "calibration, each with a 95 %% interval")
    s.add_argument("--run", required=True, help="a run with a stage-2 classifier (train-cls output)")
    _fold_flag(s)
    s.add_argument("--data", required=True, help="a labelled folder (labels.csv or normal/ + pneumothorax/), Kaggle or SIIM layout")
    s.add_argument("--layout", default="auto", choices=layouts())
    s.add_argument("--skip-bad", action="store_true")
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.add_argument("--out", help="JSON file for the metrics (default: RUN/cls-<data>.json, beside the run's own files)")
    s.set_defaults(func=c.cmd_evaluate_cls)


def _run(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope run``: the whole study."""
    s = sub.add_parser("run", help="the whole study: Table 1 per encoder, stage 2, Table 2, HTML report")
    _training_flags(s)
    s.add_argument("--encoder", dest="encoders", action="append", metavar="NAME",
                   help="an encoder of Table 1, e.g. resnet34 (repeat it; default: the config's encoders)")
    s.add_argument("--out", help="study folder (default: runs/demo for the phantoms, runs/<first --data folder's name> "
                   "for your data; a folder holding a study of other data is refused)")
    s.add_argument("--skip-bad", action="store_true")
    _add_config_args(s)
    s.set_defaults(func=c.cmd_run)


def _predict(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope predict``: files and folders."""
    from ..inference.options import BACKENDS, PRECISION_CHOICES, TTA_MODES

    s = sub.add_parser("predict", help="masks, overlays and predictions.csv for DICOM/PNG files or folders")
    s.add_argument("--run", required=True, help="a run folder (train-seg --out) or a study folder (run --out: its best run)")
    _fold_flag(s)
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
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    s.add_argument("--dicom-out", metavar="DIR", help="also write DICOM results of DICOM inputs into DIR: SEG, "
                   "Comprehensive 3D SR, burned-in overlay (docs/dicom.md)")
    s.add_argument("--dicom-objects", default="seg,sr,sc", metavar="KINDS",
                   help="which DICOM results, comma-separated: seg, sr, sc (default: all three)")
    s.add_argument("--no-resume", action="store_true", help="start over instead of skipping files already predicted")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable files and list them in OUT/skipped.csv")
    s.set_defaults(func=c.cmd_predict)


def _export(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope export``: ONNX."""
    s = sub.add_parser("export", help="export a run's U-Net to ONNX with a parity check")
    s.add_argument("--run", required=True)
    _fold_flag(s)
    s.add_argument("--format", default="onnx", choices=["onnx"])
    s.add_argument("--no-precision", action="store_true", help="skip judging bf16/int8 on the run's validation images")
    s.add_argument("--out", help="output file (default: in the run folder)")
    s.set_defaults(func=c.cmd_export)


def _serve(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope serve``: the HTTP server."""
    from ..inference.options import BACKENDS

    s = sub.add_parser("serve", help="HTTP API (POST /predict) and web viewer for a trained run")
    s.add_argument("--run", required=True)
    _fold_flag(s)
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
    s.set_defaults(func=c.cmd_serve)


def _listen(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope listen``: the DICOM node."""
    from ..inference.options import BACKENDS

    s = sub.add_parser("listen", help="a DICOM node: receive radiographs (C-STORE), send SEG/SR/overlay back",
                       description="Receive CR/DX radiographs as a DICOM Storage SCP, predict each study once no new "
                       "instance came for --quiet-seconds, and send its DICOM results (SEG, SR, burned-in overlay) to every "
                       "--send-to, with retries. Received instances and queued results live in --spool, so a node killed "
                       "and restarted loses nothing and sends nothing twice. Run it as a service with systemd (see "
                       "docs/dicom.md); it stops cleanly on SIGTERM.")
    s.add_argument("--run", required=True, help="a trained run (with stage 2 for P(pneumothorax))")
    _fold_flag(s)
    s.add_argument("--spool", required=True, metavar="DIR", help="folder for received instances and queued results")
    s.add_argument("--ae-title", default="PNEUMOSCOPE", help="this node's AE title (default PNEUMOSCOPE)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112; 0 picks a free one)")
    s.add_argument("--allow-aet", action="append", metavar="AE", help="accept associations only from this calling AE "
                   "title (repeat it; default: any)")
    s.add_argument("--send-to", action="append", metavar="DEST", help="required: where results go, AE@host:port (C-STORE) "
                   "or a DICOMweb base URL (STOW-RS); repeat it for several")
    s.add_argument("--quiet-seconds", type=finite, default=5.0, help="predict a study once no instance came for this long")
    s.add_argument("--dicom-objects", default="seg,sr,sc", metavar="KINDS", help="which results: seg, sr, sc")
    s.add_argument("--retry-seconds", type=finite, default=2.0, help="first retry of a failed delivery (doubling, at most 300 s)")
    s.add_argument("--log-phi", action="store_true", help="put Study Instance UIDs in the log (default: digests only)")
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=c.cmd_listen)


def _upgrade_run(sub: argparse._SubParsersAction) -> None:
    """``pneumoscope upgrade-run``: old run folders."""
    s = sub.add_parser("upgrade-run", help="convert a run folder of pneumoscope 0.1 (pickles) to safe formats")
    s.add_argument("--run", required=True, help="the run folder to convert")
    s.add_argument("--trust-pickles", action="store_true", help="unpickle the old files where plain loading does not "
                   "suffice (the stage-2 classifier always needs it); unpickling can run code: only for folders you trust")
    s.set_defaults(func=c.cmd_upgrade_run)


COMMANDS = (_synth, _convert, _train_seg, _evaluate_seg, _train_cls, _evaluate_cls, _run, _predict, _export, _serve,
            _listen, _upgrade_run)  # in pipeline order: how --help lists them


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = Parser(prog="pneumoscope", description="Pneumothorax segmentation and detection in chest X-rays.")
    p.add_argument("--version", action="version", version=f"pneumoscope {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():  # every command's --help: its one-line summary on top, defaults shown
        command.formatter_class = DefaultsShown
        for action in command._actions:  # argparse formats no help it was not given: give the default one
            if not action.help and action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                action.help = "default: %(default)s"
        if command.description is None:
            command.description = next(a.help for a in sub._choices_actions if a.dest == command.prog.split()[-1])
    return p
