"""One HTTP/1.1 request with any method, CONNECT and TRACE included, and every header kept."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def request(
    base: str, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers (``get_all`` shows repeated ones) and body of ``method path`` at ``base``."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()
