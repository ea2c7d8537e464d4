"""The server's listening socket, opened before anything claims to serve."""

from __future__ import annotations

import socket

from ..errors import PneumoscopeError


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (0: a free port), or one line saying why there is none."""
    if not 0 <= port <= 65535:
        raise PneumoscopeError(f"--port {port}: must be 0-65535 (0 picks a free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PneumoscopeError(f"--host {host}: cannot resolve ({exc.strerror})") from exc
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise PneumoscopeError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc
    return sock
