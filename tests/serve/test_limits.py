"""The server's memory is bounded by its limits: a real `pneumoscope serve` process, measured from
/proc while oversized bodies stream in and large images arrive at once."""

from __future__ import annotations

import http.client
import io
import json
import os
import select
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import free_port
from tests.test_reliability import header_only_png

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")]
BOUNDARY = "pneumoscope-test-boundary"


def _status(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(key)


@pytest.fixture(scope="module")
def server(stage2_run, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "log.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pneumoscope", "serve", "--run", str(stage2_run), "--port", str(port),
                                 "--backend", "torch", "--max-upload-mb", "2", "--max-megapixels", "25"],
                                stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(1200):  # the server warms up first (export, precision judgement, backend choice)
        if "serving" in log.read_text():
            break
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    text = log.read_text()
    assert "backend torch-" in text and text.index("backend torch-") < text.index("serving")  # warmed up before serving
    yield port, proc.pid
    proc.terminate()
    proc.wait(timeout=30)


def _multipart(name: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(port: int, body: bytes, name: str = "x.png") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/predict", body=_multipart(name, body),
                 headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((height, width)) * 255).astype(np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def test_an_oversized_chunked_body_is_stopped_while_it_streams(server):
    port, pid = server
    base = _status(pid, "VmHWM")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent = [0]

    def body():
        yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n".encode()
        chunk = b"\x00" * (1 << 20)
        for _ in range(300):  # 300 MB if nobody stops it
            if select.select([conn.sock], [], [], 0)[0]:
                return  # an answer came: stop sending, as curl and browsers do
            sent[0] += len(chunk)
            yield chunk

    try:
        conn.request("POST", "/predict", body=body(), encode_chunked=True,
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"})
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending: what should happen
    resp = conn.getresponse()
    assert resp.status == 413 and "larger than 2 MB" in json.loads(resp.read())["detail"]
    assert sent[0] < 300 << 20  # it did not take the whole body
    assert _status(pid, "VmHWM") - base < 40  # MB: nothing like the body was held


def test_a_client_that_never_reads_early_still_gets_its_413(server):
    """http.client sends the whole body before it reads: the server lingers (reads and drops) long
    enough for a moderate body to end, so the 413 is not destroyed by a reset."""
    port, _ = server
    for _ in range(5):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/predict", body=_multipart("big.png", b"\x00" * (12 << 20)),
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        resp = conn.getresponse()
        assert resp.status == 413 and "larger than 2 MB" in json.loads(resp.read())["detail"]
        conn.close()


def test_a_declared_huge_body_is_refused_before_it_is_sent(server):
    port, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(1 << 30))
    conn.endheaders()
    resp = conn.getresponse()  # without sending a byte of the body
    assert resp.status == 413


def test_concurrent_large_images_keep_memory_bounded(server, tmp_path):
    port, pid = server
    bomb = header_only_png(tmp_path / "bomb.png", 12000, 12000).read_bytes()  # 144 MP in about 140 KB
    assert len(bomb) < 2 << 20
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: _post(port, bomb, "bomb.png"), range(3)))
    assert [a[0] for a in answers] == [413] * 3 and "megapixels" in answers[0][1]["detail"]
    big = _png(1400, 1400)  # under the limits: decoded and predicted, one at a time
    assert _post(port, big)[0] == 200  # warm-up: model, backend, allocator
    base = _status(pid, "VmHWM")
    status = _post(port, big)[0]
    one = _status(pid, "VmHWM") - base
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _post(port, big)[0], range(8)))
    eight = _status(pid, "VmHWM") - base
    assert status == 200 and statuses == [200] * 8
    print(f"peak RSS growth: one image {one} MB, eight at once {eight} MB")
    assert eight <= max(3 * one, 60), (one, eight)  # 8 at once cost about what one costs, not 8 times
