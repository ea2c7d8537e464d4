"""The DICOM node under a stream of studies: N single-image studies (real SIIM-ACR radiographs in
SIIM's own DICOM form, 1024 px JPEG Baseline, each in a study of its own) pushed by dcmtk's
``storescu`` to ``pneumoscope listen``, which sends SEG, SR and overlay to a real Orthanc.

Measured from outside the node: studies per minute (first push to the last study's results stored
in Orthanc), latency per study from the start of its C-STORE to its last result seen in Orthanc
(median, p95; includes the node's quiet period), and the node's peak RSS. Prints a table and the CPU.

    .venv/bin/python bench/bench_node.py --run runs/demo/seg/resnet18 [--studies 100] [--quiet 1]

Needs Debian's orthanc and dcmtk (``.ci/run`` installs them) and imagecodecs (the test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import cpu_flags, peak_mb  # noqa: E402
from tests.dicom_samples import siim_dicom  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.pacs import Orthanc  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "node.jsonl"


def watch(orthanc: Orthanc, seen: dict[str, float], stop: threading.Event) -> None:
    """Follow Orthanc's change log: the time each result instance is first seen, by study UID."""
    since = 0
    while not stop.is_set():
        page = orthanc.get(f"/changes?since={since}&limit=1000").json()
        for change in page["Changes"]:
            if change["ChangeType"] == "NewInstance":
                tags = orthanc.get(f"/instances/{change['ID']}/simplified-tags").json()
                if tags.get("Manufacturer") == "pneumoscope project":
                    seen.setdefault(tags["StudyInstanceUID"], [])
                    seen[tags["StudyInstanceUID"]].append(time.time())
        since = page["Last"]
        if not page["Changes"]:
            time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained run (stage 2 included for P(pneumothorax))")
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--quiet", type=float, default=1.0, help="the node's --quiet-seconds")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between pushes (0: a burst, as fast as storescu goes)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-node-"))
    (work / "in").mkdir()
    files = [siim_dicom(work / "in" / f"s{k:03d}.dcm", "siim", index=k) for k in range(args.studies)]
    import pydicom

    studies = [str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files]
    node_port = free_port()
    orthanc = Orthanc(work / "orthanc", node_port, "PTXAI")
    node = subprocess.Popen([sys.executable, "-m", "pneumoscope", "listen", "--run", args.run, "--spool", str(work / "spool"),
                             "--ae-title", "PTXAI", "--port", str(node_port), "--send-to",
                             f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--quiet-seconds", str(args.quiet),
                             "--backend", args.backend], stdout=subprocess.PIPE, stderr=open(work / "node.log", "wb"), text=True)
    try:
        ready = node.stdout.readline()
        assert ready.startswith("listening"), (work / "node.log").read_text()
        seen: dict[str, list[float]] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(orthanc, seen, stop), daemon=True)
        watcher.start()
        pushed: dict[str, float] = {}
        t0 = time.time()
        for f, study in zip(files, studies):  # one storescu per study, as a modality sends them
            if args.interval and pushed:
                time.sleep(max(0.0, t0 + args.interval * len(pushed) - time.time()))
            pushed[study] = time.time()
            subprocess.run(["storescu", "-xy", "-aet", "ORTHANC", "-aec", "PTXAI", "127.0.0.1", str(node_port), str(f)],
                           check=True, capture_output=True)
        push_seconds = time.time() - t0
        deadline = time.time() + 600 + 10 * args.studies
        while time.time() < deadline and (len(seen) < len(studies) or any(len(seen[s]) < 2 for s in studies)):
            time.sleep(0.5)
        time.sleep(2 * args.quiet + 2)  # a SEG arrives with its SR and overlay: the last of each study
        stop.set()
        rss = peak_mb(node.pid)
    finally:
        node.terminate()
        node.wait(60)
        orthanc.stop()
    done = [s for s in studies if s in seen]
    latency = np.array([max(seen[s]) - pushed[s] for s in done])
    total = max(max(seen[s]) for s in done) - t0
    row = {"studies": len(studies), "with_results": len(done), "results": sum(len(seen[s]) for s in done),
           "push_s": round(push_seconds, 1), "studies_per_min": round(60 * len(done) / total, 1),
           "latency_median_s": round(float(np.median(latency)), 2), "latency_p95_s": round(float(np.percentile(latency, 95)), 2),
           "node_peak_rss_mb": rss, "quiet_s": args.quiet, "interval_s": args.interval, "run": args.run, "backend": args.backend,
           "cpu": cpu_flags(), "cores": os.cpu_count()}
    pace = f"one study every {args.interval:g} s" if args.interval else "a burst"
    print(f"CPU flags: {row['cpu']}; cores: {row['cores']}; run: {args.run}; node --quiet-seconds {args.quiet}; "
          f"{len(studies)} studies pushed as {pace} in {push_seconds:.1f} s")
    print(f"{'studies':>8} {'results':>8} {'studies/min':>12} {'latency median':>15} {'latency p95':>12} {'node peak RSS':>14}")
    print(f"{len(done):>5}/{len(studies):<2} {row['results']:>8} {row['studies_per_min']:>12} "
          f"{row['latency_median_s']:>13} s {row['latency_p95_s']:>10} s {rss:>11} MB")
    with open(args.results, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
