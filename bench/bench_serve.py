"""Load test of `pneumoscope serve` on loopback: requests/s and p50/p95 latency at 1, 4 and 16
concurrent clients, server memory at the end.

    .venv/bin/python bench/bench_serve.py [--run runs/demo/seg/resnet18] [--requests 48]

Starts the server as a subprocess on 127.0.0.1 (a free port), posts a 1024 px phantom PNG
(the run's stage 2 included when it has one), bounded in count, and stops the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body(png: bytes) -> tuple[bytes, str]:
    boundary = "pneumoscopebench"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + png + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post(port: int, body: bytes, ctype: str) -> float:
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/predict", body, {"Content-Type": ctype})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}")
    return time.perf_counter() - t


def _memory(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    val = {ln.split(":")[0]: float(ln.split()[1]) / 1024 for ln in status.splitlines() if ln.startswith(("VmRSS", "VmHWM"))}
    return val.get("VmRSS", float("nan")), val.get("VmHWM", float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo" / "seg" / "resnet18")
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    args = ap.parse_args()
    if not (args.run / "best.pt").is_file():
        sys.exit(f"{args.run}: no trained run; run `bash scripts/run.sh` first or pass --run")
    sys.path.insert(0, str(ROOT / "src"))
    from pneumoscope.data.synth import render

    png = cv2.imencode(".png", render(1024, True, np.random.default_rng(3)).image)[1].tobytes()
    body, ctype = _body(png)
    port = _free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "pneumoscope", "serve", "--run", str(args.run), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        _post(port, body, ctype)  # first request chooses the backend
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        print(f"run {args.run}, backend {health['backend']}, stage 2: {health['stage2']}, image 1024x1024 PNG "
              f"({len(png) / 1024:.0f} KiB), {args.requests} requests per level")
        print(f"{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'RSS MB':>9}")
        for clients in (1, 4, 16):
            t = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                lat = np.array(list(pool.map(lambda _: _post(port, body, ctype), range(args.requests))))
            wall = time.perf_counter() - t
            rss, _ = _memory(proc.pid)
            print(f"{clients:>8}{args.requests / wall:>9.2f}{np.percentile(lat, 50) * 1000:>9.0f}"
                  f"{np.percentile(lat, 95) * 1000:>9.0f}{rss:>9.0f}")
        rss, hwm = _memory(proc.pid)
        print(f"server memory at the end: {rss:.0f} MB resident, {hwm:.0f} MB peak")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
