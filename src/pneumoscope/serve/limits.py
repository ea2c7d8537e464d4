"""Request-body limit enforced while the body streams in, before any multipart parsing.

A declared ``Content-Length`` over the limit is answered 413 at once, without reading the
body; a chunked body (or one whose length was understated) is counted as it arrives and
stopped with 413 as soon as it passes the limit. Nothing larger than the limit is ever held
or spooled, whatever the client claims.

After a 413 the connection is closed, but not at once: closing a socket with unread request
bytes makes the kernel send a reset, which can destroy the 413 before the client reads it. So,
like nginx's lingering close, the rest of the body is read and discarded for a bounded time and
amount (``LINGER_SECONDS``, ``LINGER_BYTES``) while the answer is already on its way.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import HTTPException

SLACK = 64 * 1024  # multipart boundaries and part headers around the file itself
TAIL = "pneumoscope.body_tail"  # scope key: the last bytes of the request body (to tell a cut-off upload)
LINGER_SECONDS = 2.0  # at most this long, and
LINGER_BYTES = 64 << 20  # at most this much, is read and dropped after a 413 before closing


async def _drain(receive: Any) -> None:
    """Read and drop what is left of a refused body, within the linger bounds."""
    deadline, dropped = time.monotonic() + LINGER_SECONDS, 0
    while dropped < LINGER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return  # the client went away
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _end_lingering(receive: Any, send: Any, last: dict) -> None:
    """Send the response's last body part now, drop what is left of the request (``receive``; None:
    nothing is left), then end the response, after which the server closes the connection."""
    await send({**last, "more_body": True})
    if receive is not None:
        await _drain(receive)
    await send({"type": "http.response.body", "body": b""})


class BodyLimit:
    """ASGI middleware: at most ``limit`` bytes (plus multipart slack) of request body."""

    def __init__(self, app: Any, limit: int, label: str) -> None:
        self.app, self.limit, self.label = app, limit + SLACK, label

    async def _reject(self, receive: Any, send: Any) -> None:
        """413 for a declared length over the limit, then a lingering close."""
        body = json.dumps({"detail": f"upload larger than {self.label}"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await _end_lingering(receive, send, {"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(receive, send)
            return
        received, over, rest = 0, False, False
        scope[TAIL] = b""

        async def counted() -> dict:
            nonlocal received, over, rest
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                scope[TAIL] = (scope[TAIL] + message.get("body", b""))[-256:]
                if received > self.limit:
                    over, rest = True, bool(message.get("more_body", False))
                    # FastAPI answers it as it is; "close" makes the server drop the rest instead of reading it
                    raise HTTPException(413, f"upload larger than {self.label}", headers={"Connection": "close"})
            return message

        async def lingering(message: dict) -> None:
            if over and message["type"] == "http.response.body" and not message.get("more_body", False):
                await _end_lingering(receive if rest else None, send, message)
                return
            await send(message)

        await self.app(scope, counted, lingering)
