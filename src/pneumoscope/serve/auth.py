"""Access control for the server: a bearer token, and where it may listen without one.

A server bound beyond the loopback interface serves patient images to anyone who can reach its
port. So such a server needs a token (``--token-file FILE`` or the ``PNEUMOSCOPE_TOKEN``
environment variable) unless ``--insecure-no-token`` says explicitly that it runs without one.
With a token, every request except the viewer page and the API docs must carry
``Authorization: Bearer <token>``; the token is compared in constant time (``hmac.compare_digest``),
and a refused request is answered 401 before its body is read. Every answer carries
``Cache-Control: no-store``, so neither a browser nor a proxy keeps a patient's picture.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import PneumoscopeError
from .limits import _end_lingering

TOKEN_ENV = "PNEUMOSCOPE_TOKEN"
MIN_TOKEN = 16
PUBLIC = ("/", "/docs", "/openapi.json", "/favicon.ico")  # no patient data: the viewer page and the API's description
PUBLIC_PREFIX = "/docs-static/"
MAKE = "python -c \"import secrets; print(secrets.token_urlsafe(32))\""


def read_token(token_file: str | None, environ: dict | None = None) -> str | None:
    """The token from ``token_file`` (its first line) or the environment, or None; one line when unusable."""
    environ = os.environ if environ is None else environ
    if token_file:
        try:
            lines = Path(token_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PneumoscopeError(f"--token-file {token_file}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
        token, where = (lines[0].strip() if lines else ""), f"--token-file {token_file}"
    elif environ.get(TOKEN_ENV) is not None:
        token, where = environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return None
    if len(token) < MIN_TOKEN:
        raise PneumoscopeError(f"{where}: the token is {len(token)} characters; use at least {MIN_TOKEN} (e.g. {MAKE})")
    return token


def token_file_warning(token_file: str | None) -> str | None:
    """A line when the token file can be read by other users of this machine (None: it cannot)."""
    if not token_file:
        return None
    try:
        mode = Path(token_file).stat().st_mode & 0o777
    except OSError:
        return None
    if mode & 0o077:
        return (f"--token-file {token_file} can be read by other users (mode {mode:04o}): anyone who can read it can "
                f"use the server; chmod 600 {token_file}")
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only the loopback interface (127.0.0.0/8, ::1, localhost)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    try:
        return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve beyond localhost without a token unless asked to explicitly."""
    if token is None and not insecure and not is_loopback(host):
        raise PneumoscopeError(f"--host {host}: serves patient images to anyone who can reach this port; give a token "
                               f"(--token-file FILE or {TOKEN_ENV}; make one with {MAKE}) or pass --insecure-no-token")


class TokenAuth:
    """ASGI middleware: ``Cache-Control: no-store`` on every answer and, with a token, 401 for a
    request without it (except the public paths)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, (token.encode() if token else None)

    def _allowed(self, scope: dict) -> bool:
        path = scope.get("path", "")
        if self.token is None or path in PUBLIC or path.startswith(PUBLIC_PREFIX):
            return True
        auth = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, given = auth.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._allowed(scope):
            body = json.dumps({"detail": "this server needs its token: send Authorization: Bearer <token>"}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                    (b"www-authenticate", b'Bearer realm="pneumoscope"'), (b"cache-control", b"no-store"),
                                    (b"connection", b"close")]})
            has_body = scope["method"] in ("POST", "PUT", "PATCH")
            await _end_lingering(receive if has_body else None, send, {"type": "http.response.body", "body": body})
            return

        async def no_store(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, no_store)
