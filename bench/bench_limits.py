"""Memory under worst-case inputs: a real `pneumoscope serve` process (its peak RSS read from /proc
after each attack, cumulative), and `pneumoscope predict` / the Python API in a fresh process per
input (peak RSS of that process). Prints two tables (and the CPU it ran on).

    .venv/bin/python bench/bench_limits.py [--run runs/demo/seg/resnet18]

Without a run folder it trains a tiny one first (a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import cpu_flags, peak_mb  # noqa: E402
from tests.dicom_samples import deflate_bomb  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.test_reliability import header_only_png  # noqa: E402

BOUNDARY = "bench-boundary"






def post(port: int, data: bytes, name: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").encode() + data \
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    conn.request("POST", "/predict", body=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def streamed(port: int, megabytes: int) -> tuple[int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sent = [0]

    def body():
        yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n".encode()
        for _ in range(megabytes):
            if select.select([conn.sock], [], [], 0)[0]:
                return  # the server answered: stop, as curl and browsers do
            sent[0] += 1
            yield b"\x00" * (1 << 20)

    try:
        conn.request("POST", "/predict", body=body(), encode_chunked=True,
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"})
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = conn.getresponse()
    resp.read()
    return resp.status, sent[0]


def noise_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(side).random((side, side)) * 255).astype(np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def tiny_run(work: Path) -> Path:
    from pneumoscope.cli import main

    run = work / "run"
    assert main(["train-seg", "--out", str(run), "--epochs", "1", "--size", "128", "--set", "data.synth_n=64",
                 "--set", "train.progress=false", "--set", f"data.cache_dir={work / 'cache'}"]) == 0
    return run


PEAK = ("import resource, sys\nfrom pneumoscope.cli import main\ncode = main(sys.argv[1:])\n"
        "print('PEAK', code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n")
API_PEAK = ("import resource, sys, numpy as np\nimport pneumoscope\nm = pneumoscope.load_run(sys.argv[1], backend='torch')\n"
            "try:\n    m.predict(np.broadcast_to(np.uint8(0), (20000, 20000)))\n    code = 0\n"
            "except pneumoscope.PneumoscopeError:\n    code = 2\n"
            "print('PEAK', code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n")


def process_peak(snippet: str, *args: str) -> tuple[int, int, str]:
    """Exit code, peak RSS (MB) and error line of one fresh process running ``snippet``."""
    done = subprocess.run([sys.executable, "-c", snippet, *args], capture_output=True, text=True)
    line = [x for x in done.stderr.splitlines() if x.startswith("PEAK")][-1].split()
    error = next((x for x in done.stderr.splitlines() if x.startswith("pneumoscope: error:")), "")
    return int(line[1]), int(line[2]), error[len("pneumoscope: error: "):][:90]


def cli_rows(run: Path, work: Path) -> list[tuple]:
    """predict on the worst input of each class, each in a fresh process."""
    rows = []
    cases = {"one 1024 px radiograph (baseline)": ("ok.png", lambda p: p.write_bytes(noise_png(1024))),
             "2 MB deflated DICOM inflating to 2 GiB": ("bomb.dcm", lambda p: deflate_bomb(p, 64, 64, 2 << 30)),
             "deflated DICOM declaring 20000x20000": ("big.dcm", lambda p: deflate_bomb(p, 20000, 20000, 4096)),
             "13000x13000 PNG (169 MP, the largest under the 179 MP cap)": ("large.png",
                                                                          lambda p: header_only_png(p, 13000, 13000)),
             "20000x20000 PNG (400 MP)": ("huge.png", lambda p: header_only_png(p, 20000, 20000))}
    for label, (name, make) in cases.items():
        folder = work / "cli" / name
        folder.mkdir(parents=True)
        make(folder / name)
        code, peak, error = process_peak(PEAK, "predict", "--run", str(run), str(folder), "--out", str(work / "cli-out" / name),
                                         "--backend", "torch", "--overlay-size", "0")
        rows.append((label, f"{(folder / name).stat().st_size / 1e6:.1f} MB", code, peak, error or "-"))
    code, peak, _ = process_peak(API_PEAK, str(run))
    rows.append(("Python API: a 20000x20000 array", "0 (a broadcast view)", code, peak, "refused by its shape"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "demo" / "seg" / "resnet18"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-limits-"))
    run = Path(args.run) if Path(args.run, "best.safetensors").is_file() else tiny_run(work)
    port = free_port()
    log = work / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "pneumoscope", "serve", "--run", str(run), "--port", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    while "serving" not in log.read_text():
        time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
    rows = []
    try:
        radiograph = noise_png(2048)
        post(port, radiograph, "warm.png")  # model, backend choice, allocator
        rows.append(("idle after one 2048 px request", "-", "200", peak_mb(proc.pid)))
        status, sent = streamed(port, 1024)
        rows.append(("1 GiB chunked upload (limit 50 MB)", f"{sent} MB sent", str(status), peak_mb(proc.pid)))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(1 << 30))
        conn.endheaders()
        resp = conn.getresponse()
        rows.append(("Content-Length: 1 GiB", "0 MB sent", str(resp.status), peak_mb(proc.pid)))
        bomb = header_only_png(work / "bomb.png", 12000, 12000).read_bytes()
        with ThreadPoolExecutor(3) as pool:
            codes = set(pool.map(lambda _: post(port, bomb, "bomb.png"), range(3)))
        rows.append(("3 concurrent 12000x12000 PNGs (144 MP, 140 KB each)", "3", "/".join(map(str, codes)),
                     peak_mb(proc.pid)))
        dfl = deflate_bomb(work / "bomb.dcm", 64, 64, 2 << 30).read_bytes()
        rows.append(("2 MB deflated DICOM inflating to 2 GiB", f"{len(dfl) >> 20} MB", str(post(port, dfl, "bomb.dcm")),
                     peak_mb(proc.pid)))
        largest = noise_png(5000)
        rows.append((f"largest allowed image: 5000x5000 PNG (25 MP, {len(largest) >> 20} MB)", "1",
                     str(post(port, largest, "largest.png")), peak_mb(proc.pid)))
        big = noise_png(4096)
        with ThreadPoolExecutor(32) as pool:
            codes = set(pool.map(lambda _: post(port, big, "big.png"), range(32)))
        rows.append((f"32 concurrent 4096x4096 PNGs ({len(big) >> 20} MB each)", "32", "/".join(map(str, codes)),
                     peak_mb(proc.pid)))
    finally:
        proc.terminate()
        proc.wait()
    try:
        cli = cli_rows(run, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"CPU flags: {cpu_flags()}; cores: {os.cpu_count()}; run: {run}")
    print("| attack | sent | status | server peak RSS MB (cumulative) |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    print("\n| input to predict (fresh process each) | file | exit | peak RSS MB | message |")
    print("|---|---|---|---|---|")
    for r in cli:
        print("| " + " | ".join(map(str, r)) + " |")
    print(json.dumps({"server": rows, "cli": cli}))


if __name__ == "__main__":
    main()
