"""Server memory under worst-case uploads: a real `pneumoscope serve` process, its peak RSS read
from /proc after each attack. Prints one table (and the CPU it ran on).

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
from tests.helpers import free_port  # noqa: E402
from tests.test_reliability import header_only_png  # noqa: E402

BOUNDARY = "bench-boundary"


def cpu_flags() -> str:
    flags = set(open("/proc/cpuinfo").read().split())
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "avx512_vnni", "avx_vnni") if f in flags)


def peak_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


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
        big = noise_png(4096)
        with ThreadPoolExecutor(32) as pool:
            codes = set(pool.map(lambda _: post(port, big, "big.png"), range(32)))
        rows.append((f"32 concurrent 4096x4096 PNGs ({len(big) >> 20} MB each)", "32", "/".join(map(str, codes)),
                     peak_mb(proc.pid)))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"CPU flags: {cpu_flags()}; cores: {os.cpu_count()}; run: {run}")
    print("| attack | sent | status | server peak RSS MB (cumulative) |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
