"""Renders nginx's config from deploy/nginx/nginx.conf.template, for the local stack and production.

One template serves both: the local stack (``render_nginx_conf``: loopback ports, every path under
the stack folder) and docker compose (``render_production_conf``: compose service names resolved
by Docker's DNS, logs to stdout/stderr, a TLS server block example). ``deploy/nginx/nginx.conf`` is
the production rendering, checked in; regenerate it with ``python -m deploy.local.nginx``
(a unit test fails when it is stale).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NGINX_DIR = Path(__file__).resolve().parents[1] / "nginx"
TEMPLATE = NGINX_DIR / "nginx.conf.template"
PRODUCTION_CONF = NGINX_DIR / "nginx.conf"

# Locations that get the per-address request limit unless a Route says otherwise.
RATE_LIMITED_PREFIXES = ("/v1/auth/", "/v1/users")
DEFAULT_AUTH_RATE_PER_S = 10
DEFAULT_AUTH_BURST = 40
DEFAULT_MAX_BODY = "64k"


@dataclass(frozen=True, slots=True)
class Route:
    """A URL prefix proxied to an upstream group (``host`` on each of ``ports``)."""

    name: str
    location: str
    ports: Sequence[int]
    websocket: bool = False
    host: str = "127.0.0.1"
    # None: limited when the location is an auth route (RATE_LIMITED_PREFIXES).
    rate_limited: bool | None = None

    @property
    def limited(self) -> bool:
        if self.rate_limited is not None:
            return self.rate_limited
        return self.location.startswith(RATE_LIMITED_PREFIXES)


@dataclass(frozen=True, slots=True)
class Layout:
    """How and where nginx runs: everything that differs between the local stack and production."""

    header: str
    listen: str
    pid: str
    error_log: str
    access_log: str
    workers: str = "1"
    temp_dir: str | None = None
    # A DNS resolver for service names (Docker's is 127.0.0.11): upstream servers then carry
    # ``resolve`` so relays added with ``--scale`` are picked up without a reload (nginx >= 1.27.3).
    resolver: str | None = None
    tls_example: bool = False
    auth_rate_per_s: int = DEFAULT_AUTH_RATE_PER_S
    auth_burst: int = DEFAULT_AUTH_BURST
    max_body: str = DEFAULT_MAX_BODY


def _envelope(status: int, code: str, message: str) -> str:
    body = f'{{"error":{{"code":"{code}","message":"{message}","request_id":"$chat_request_id"}}}}'
    return f"            default_type application/json;\n            return {status} '{body}';\n"


def _upstream(route: Route, layout: Layout) -> str:
    resolve = " resolve" if layout.resolver else ""
    servers = "".join(f"        server {route.host}:{port}{resolve};\n" for port in route.ports)
    balance = "        least_conn;\n" if route.websocket else ""
    # A shared zone: least_conn counts connections across workers (and `resolve` needs it).
    zone = f"        zone {route.name} 64k;\n"
    return f"    upstream {route.name} {{\n{zone}{balance}{servers}        keepalive 16;\n    }}\n"


def _location(route: Route, layout: Layout) -> str:
    lines = [
        f"        location {route.location} {{",
        f"            proxy_pass http://{route.name};",
        "            proxy_http_version 1.1;",
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Request-ID $chat_request_id;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        "            proxy_set_header X-Real-IP $remote_addr;",
    ]
    if route.limited:
        lines.append(f"            limit_req zone=chat_auth burst={layout.auth_burst} nodelay;")
    if route.websocket:
        lines += [
            # nginx's error lines quote the request line, query string included, and a WebSocket
            # client may send its token as ?token=: log only critical errors for this route.
            f"            error_log {layout.error_log} crit;",
            "            proxy_set_header Upgrade $http_upgrade;",
            "            proxy_set_header Connection $connection_upgrade;",
            "            proxy_connect_timeout 2s;",
            "            proxy_read_timeout 1h;",
            "            proxy_send_timeout 1h;",
            "            proxy_buffering off;",
            # A draining relay refuses connections or answers 503: try the next one.
            "            proxy_next_upstream error timeout http_502 http_503;",
            "            proxy_next_upstream_tries 3;",
        ]
    else:
        lines.append('            proxy_set_header Connection "";')
    lines.append("        }")
    return "\n".join(lines) + "\n"


def _server_body(routes: Sequence[Route], layout: Layout) -> str:
    parts = [
        "",
        "        add_header X-Content-Type-Options nosniff always;",
        "        add_header X-Frame-Options DENY always;",
        "        add_header Referrer-Policy no-referrer always;",
        "        add_header Content-Security-Policy \"default-src 'none'; frame-ancestors 'none'\""
        " always;",
        "        add_header Cross-Origin-Resource-Policy same-origin always;",
        "        add_header X-Request-ID $chat_request_id always;",
        "",
        "        # Errors nginx itself produces answer in the API's JSON error envelope.",
        "        error_page 413 = @too_large;",
        "        error_page 429 = @rate_limited;",
        "        error_page 502 503 504 = @unavailable;",
        "",
        "        location = /healthz {",
        "            default_type application/json;",
        '            return 200 \'{"status":"ok"}\';',
        "        }",
        "",
        "        location @too_large {\n"
        + _envelope(413, "too_large", "request body too large")
        + "        }",
        "        location @rate_limited {\n"
        + _envelope(429, "rate_limited", "too many requests, slow down")
        + "        }",
        "        location @unavailable {\n"
        + _envelope(503, "unavailable", "service unavailable, retry")
        + "        }",
        "",
    ]
    body = "\n".join(parts) + "\n"
    body += "".join(_location(r, layout) for r in routes)
    body += "        location / {\n" + _envelope(404, "not_found", "no such route") + "        }"
    return body


def _tls_example(routes: Sequence[Route], layout: Layout) -> str:
    lines = [
        "server {",
        "    listen 8443 ssl;",
        "    http2 on;",
        "    ssl_certificate /etc/nginx/certs/fullchain.pem;",
        "    ssl_certificate_key /etc/nginx/certs/privkey.pem;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_session_cache shared:chat_tls:10m;",
        "    ssl_session_timeout 1d;",
        '    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;',
        *(
            line[4:] if line.startswith("    ") else line
            for line in _server_body(routes, layout).splitlines()
        ),
        "}",
    ]
    commented = "".join(f"    # {line}".rstrip() + "\n" for line in lines)
    return (
        "\n    # TLS (example): mount certificates at /etc/nginx/certs, publish 8443, uncomment,\n"
        "    # and make the plain server above `return 308 https://$host$request_uri;` instead.\n"
        "    # Same locations and headers as the plain server; HSTS only makes sense here.\n"
        + commented
    )


def render(layout: Layout, routes: Sequence[Route]) -> str:
    """The full nginx.conf text for this layout and these routes."""
    temp = ""
    if layout.temp_dir is not None:
        temp = "".join(
            f"    {kind}_temp_path {layout.temp_dir}/{name};\n"
            for kind, name in (
                ("client_body", "body"),
                ("proxy", "proxy"),
                ("fastcgi", "fastcgi"),
                ("uwsgi", "uwsgi"),
                ("scgi", "scgi"),
            )
        )
    resolver = (
        f"    # Service names resolve through Docker's DNS; re-resolved every 10 s.\n"
        f"    resolver {layout.resolver} valid=10s ipv6=off;\n    resolver_timeout 2s;\n"
        if layout.resolver
        else ""
    )
    replacements = {
        "@@HEADER@@": layout.header,
        "@@WORKERS@@": layout.workers,
        "@@PID@@": layout.pid,
        "@@ERROR_LOG@@": layout.error_log,
        "@@ACCESS_LOG@@": layout.access_log,
        "@@TEMP_PATHS@@": temp,
        "@@AUTH_RATE@@": str(layout.auth_rate_per_s),
        "@@MAX_BODY@@": layout.max_body,
        "@@RESOLVER@@": resolver,
        "@@UPSTREAMS@@": "".join(_upstream(r, layout) for r in routes),
        "@@LISTEN@@": layout.listen,
        "@@SERVER_BODY@@": _server_body(routes, layout),
        "@@TLS_EXAMPLE@@": _tls_example(routes, layout) if layout.tls_example else "",
    }
    text = TEMPLATE.read_text()
    for key, value in replacements.items():
        text = text.replace(key, value)
    return text


def render_nginx_conf(
    *,
    listen: str,
    prefix: Path,
    log_dir: Path,
    routes: Sequence[Route],
    auth_rate_per_s: int = DEFAULT_AUTH_RATE_PER_S,
    auth_burst: int = DEFAULT_AUTH_BURST,
) -> str:
    """The local stack's nginx.conf: a foreground process with every path under the stack folder."""
    layout = Layout(
        header="Generated by deploy/local/nginx.py from deploy/nginx/nginx.conf.template; "
        "do not edit the copy.",
        listen=listen,
        pid=str(prefix / "nginx.pid"),
        error_log=str(log_dir / "nginx-error.log"),
        access_log=str(log_dir / "nginx-access.log"),
        temp_dir=str(prefix / "tmp"),
        auth_rate_per_s=auth_rate_per_s,
        auth_burst=auth_burst,
    )
    return render(layout, routes)


# The compose services nginx proxies to, and their ports (the Settings defaults).
PRODUCTION_ROUTES = (
    Route("relays", "/v1/ws", [8103], websocket=True, host="relay"),
    Route("auth", "/v1/auth/", [8101], host="auth"),
    Route("auth_users", "/v1/users", [8101], host="auth"),
    Route("management", "/v1/", [8102], host="management"),
)


def render_production_conf(*, resolver: str | None = "127.0.0.11") -> str:
    """deploy/nginx/nginx.conf: compose service names, logs to stdout/stderr, a TLS example."""
    layout = Layout(
        header="Generated by `python -m deploy.local.nginx` from deploy/nginx/nginx.conf.template"
        "; do not edit.",
        listen="8080",
        pid="/tmp/nginx.pid",  # noqa: S108 - inside the container
        error_log="stderr",
        access_log="/dev/stdout",
        workers="auto",
        resolver=resolver,
        tls_example=True,
    )
    return render(layout, PRODUCTION_ROUTES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.nginx")
    parser.add_argument("--check", action="store_true", help="fail if nginx.conf is stale")
    args = parser.parse_args(argv)
    text = render_production_conf()
    if args.check:
        if PRODUCTION_CONF.read_text() != text:
            print(f"{PRODUCTION_CONF} is stale: run python -m deploy.local.nginx", file=sys.stderr)
            return 1
        return 0
    PRODUCTION_CONF.write_text(text)
    print(f"wrote {PRODUCTION_CONF}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
