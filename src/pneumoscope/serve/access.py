"""The server's access log: one line per request — when, from which address, what was asked, the
answer's status and time, and whether a token came with it — on the logger ``pneumoscope.serve``.

It names no patient: no file name, no DICOM attribute, no image; a prediction id in a path is cut to
its first 6 characters (enough to follow one prediction through the log, too few to fetch it).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

NAME = "pneumoscope.serve"  # the server's one logger name (as node.LOG is the node's)
LOG = logging.getLogger(NAME)
_ID = re.compile(r"^(/predict/)([A-Za-z0-9_-]{6})[A-Za-z0-9_-]+")


def safe_path(path: str) -> str:
    """``path`` with a prediction id cut to its first 6 characters."""
    return _ID.sub(r"\1\2…", path)


class AccessLog:
    """ASGI middleware writing one access line per HTTP request (added outermost: 401s are logged too)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), {"code": 0}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            client = (scope.get("client") or ("-", 0))[0]
            token = any(k.lower() == b"authorization" for k, _ in scope.get("headers", []))
            LOG.info('%s "%s %s" %s %.1f ms token=%s', client, scope.get("method", "-"), safe_path(scope.get("path", "")),
                     status["code"] or "-", (time.perf_counter() - t0) * 1000, "yes" if token else "no")
