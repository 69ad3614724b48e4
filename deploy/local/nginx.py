"""Renders nginx's config for the local stack from deploy/nginx/local.conf.template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "local.conf.template"


@dataclass(frozen=True, slots=True)
class Route:
    """A URL prefix proxied to an upstream group of loopback ports."""

    name: str
    location: str
    ports: Sequence[int]
    websocket: bool = False


def _upstream(route: Route) -> str:
    servers = "".join(f"        server 127.0.0.1:{port};\n" for port in route.ports)
    balance = "        least_conn;\n" if route.websocket else ""
    return f"    upstream {route.name} {{\n{balance}{servers}        keepalive 16;\n    }}\n"


def _location(route: Route, log_dir: Path) -> str:
    lines = [
        f"        location {route.location} {{",
        f"            proxy_pass http://{route.name};",
        "            proxy_http_version 1.1;",
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Request-ID $chat_request_id;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Real-IP $remote_addr;",
    ]
    if route.websocket:
        lines += [
            # nginx's error lines quote the request line, query string included, and a WebSocket
            # client may send its token as ?token=: log only critical errors for this route.
            f"            error_log {log_dir}/nginx-error.log crit;",
            "            proxy_set_header Upgrade $http_upgrade;",
            "            proxy_set_header Connection $connection_upgrade;",
            "            proxy_read_timeout 1h;",
            "            proxy_send_timeout 1h;",
            "            proxy_buffering off;",
        ]
    else:
        lines.append('            proxy_set_header Connection "";')
    lines.append("        }")
    return "\n".join(lines) + "\n"


def render_nginx_conf(*, listen: str, prefix: Path, log_dir: Path, routes: Sequence[Route]) -> str:
    """The full nginx.conf text for these routes; every path lives under ``prefix``/``log_dir``."""
    text = TEMPLATE.read_text()
    replacements = {
        "@@PREFIX@@": str(prefix),
        "@@LOG_DIR@@": str(log_dir),
        "@@LISTEN@@": listen,
        "@@UPSTREAMS@@": "".join(_upstream(r) for r in routes),
        "@@LOCATIONS@@": "".join(_location(r, log_dir) for r in routes),
    }
    for key, value in replacements.items():
        text = text.replace(key, value)
    return text
