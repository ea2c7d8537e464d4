"""Request-body limit enforced while the body streams in, before any multipart parsing.

A declared ``Content-Length`` over the limit is answered 413 at once, without reading the
body; a chunked body (or one whose length was understated) is counted as it arrives and
stopped with 413 as soon as it passes the limit. Nothing larger than the limit is ever held
or spooled, whatever the client claims.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

SLACK = 64 * 1024  # multipart boundaries and part headers around the file itself


class BodyLimit:
    """ASGI middleware: at most ``limit`` bytes (plus multipart slack) of request body."""

    def __init__(self, app: Any, limit: int, label: str) -> None:
        self.app, self.limit, self.label = app, limit + SLACK, label

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"upload larger than {self.label}"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI answers it as it is; "close" makes the server drop the rest instead of reading it
                    raise HTTPException(413, f"upload larger than {self.label}", headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)
