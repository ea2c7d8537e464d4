"""Is a download host reachable? Asked before fetching weights, so that an offline machine
fails (or falls back) at once instead of after minutes of retries."""

from __future__ import annotations

import socket


def host_reachable(host: str, timeout: float = 3.0) -> bool:
    """True when ``host`` resolves (DNS) within ``timeout`` seconds."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(old)
