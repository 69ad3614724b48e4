"""Renders nginx's config from deploy/nginx/nginx.conf.template, for the local stack and production.

One template serves both: the local stack (``render_nginx_conf``: loopback ports, every path under
the stack folder) and docker compose (``render_production_conf``: compose service names resolved
by Docker's DNS, logs to stdout/stderr, a TLS server block example). ``deploy/nginx/nginx.conf`` is
the production rendering, checked in; regenerate it with ``python -m deploy.local.nginx``
(a unit test fails when it is stale).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatcore.logging import CORRELATION_ID_RE

NGINX_DIR = Path(__file__).resolve().parents[1] / "nginx"
TEMPLATE = NGINX_DIR / "nginx.conf.template"
PRODUCTION_CONF = NGINX_DIR / "nginx.conf"
# The browser app's build output (`make web`), served at / by the local stack.
LOCAL_WEB_ROOT = Path(__file__).resolve().parents[2] / "web" / "dist"
# Where the compose image's build stage puts the same files (deploy/compose/Dockerfile.nginx).
PRODUCTION_WEB_ROOT = "/usr/share/chatstack/web"
# In production the S3 endpoint browsers reach is a deployment setting: the nginx image's
# entrypoint substitutes it into the config at start (envsubst, NGINX_ENVSUBST_FILTER in compose).
PRODUCTION_S3_ORIGIN = "${CHAT_S3_PUBLIC_ENDPOINT}"

# Locations that get the stricter per-address auth limit unless a Route says otherwise.
RATE_LIMITED_PREFIXES = ("/v1/auth/", "/v1/users")
DEFAULT_MAX_BODY = "64k"
# Every method the REST API serves somewhere (aiohttp answers HEAD for each GET route).
API_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
HEALTH_METHODS = ("GET", "HEAD")
# The app's files: / (index.html, never cached without revalidation) and /assets/ (hashed names,
# cached for a year).
APP_METHODS = ("GET", "HEAD")
APP_ASSETS = "/assets/"


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Per-client-address limits at the edge; one NAT'd office is one address, so be generous."""

    # /v1/auth/ and /v1/users: password guessing and account enumeration.
    auth_rate_per_s: int = 10
    auth_burst: int = 40
    # Every /v1/ request (auth routes and WebSocket handshakes included).
    api_rate_per_s: int = 200
    api_burst: int = 1000
    # Open WebSockets per address; benchmarks opening thousands from one host raise it.
    ws_connections_per_address: int = 1000
    # Other requests in progress at once per address (a slow client holds one each).
    requests_in_flight_per_address: int = 256
    # Management writes per bearer token (one login: a per-user limit shared by every management
    # instance); the services' CHAT_MANAGEMENT_WRITE_* defaults.
    write_rate_per_s: int = 5
    write_burst: int = 100


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
    # What the upstream serves under this prefix; anything else gets 405 with ``Allow``.
    methods: tuple[str, ...] = field(default=API_METHODS)
    # Writes limited per bearer token (``chat_writes``), across every instance behind it.
    write_limited: bool = False

    @property
    def limited(self) -> bool:
        if self.rate_limited is not None:
            return self.rate_limited
        return self.location.startswith(RATE_LIMITED_PREFIXES)

    @property
    def allow(self) -> str:
        return ", ".join(self.methods)


def chat_routes(
    *,
    relay_ports: Sequence[int],
    auth_ports: Sequence[int],
    management_ports: Sequence[int],
    relay_host: str = "127.0.0.1",
    auth_host: str = "127.0.0.1",
    management_host: str = "127.0.0.1",
) -> tuple[Route, ...]:
    """The system's routes: WebSocket to the relays, accounts to auth, the rest to management;
    each upstream lists every instance."""
    return (
        Route("relays", "/v1/ws", relay_ports, websocket=True, host=relay_host, methods=("GET",)),
        Route("auth", "/v1/auth/", auth_ports, host=auth_host, methods=("GET", "HEAD", "POST")),
        # The account's own changes: a name (PATCH me) and a password (PUT).
        Route(
            "auth_me", "/v1/auth/me", auth_ports, host=auth_host, methods=(*HEALTH_METHODS, "PATCH")
        ),
        Route("auth_password", "/v1/auth/password", auth_ports, host=auth_host, methods=("PUT",)),
        Route("auth_users", "/v1/users", auth_ports, host=auth_host, methods=HEALTH_METHODS),
        Route("management", "/v1/", management_ports, host=management_host, write_limited=True),
    )


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
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    max_body: str = DEFAULT_MAX_BODY
    # The browser app: its folder, and the S3 origin its uploads and images need (CSP).
    web_root: str = str(LOCAL_WEB_ROOT)
    s3_origin: str = "http://127.0.0.1:7070"


def _return(status: int, code: str, message: str) -> str:
    # Only $chat_request_id is interpolated, and it matches CORRELATION_ID_RE: no quote, no
    # backslash, so the body is valid JSON whatever the client sent.
    body = f'{{"error":{{"code":"{code}","message":"{message}","request_id":"$chat_request_id"}}}}'
    return f"return {status} '{body}';"


def _envelope(status: int, code: str, message: str) -> str:
    indent = "            "
    return f"{indent}default_type application/json;\n{indent}{_return(status, code, message)}\n"


@dataclass(frozen=True, slots=True)
class EdgeError:
    """An error nginx itself answers: the statuses it takes, where they go, what it says."""

    statuses: str  # as ``error_page`` lists them
    target: str  # a named location ("@...") or an explicit one
    status: int
    code: str
    message: str

    def directive(self) -> str:
        if self.target.startswith("@"):
            return f"        error_page {self.statuses} = {self.target};"
        # nginx keeps the status for an explicit target unless told another one.
        answer = "" if str(self.status) in self.statuses.split() else f"={self.status} "
        return f"        error_page {self.statuses} {answer}{self.target};"

    def location(self) -> str:
        exact = "" if self.target.startswith("@") else "= "
        envelope = _envelope(self.status, self.code, self.message)
        return f"        location {exact}{self.target} {{\n{envelope}        }}"


# A request nginx cannot parse (400), or whose line or headers are over its limits (414, 494),
# has no URI yet: a named location cannot take it, an explicit one can (asked for directly, those
# paths give the same JSON: nothing else lives there).
EDGE_ERRORS = (
    EdgeError("400", "/.errors/malformed", 400, "malformed", "malformed request"),
    EdgeError("413", "@too_large", 413, "too_large", "request body too large"),
    EdgeError("414", "/.errors/uri_too_long", 414, "too_large", "request line too long"),
    EdgeError("494", "/.errors/headers_too_large", 431, "too_large", "request headers too large"),
    EdgeError("429", "@rate_limited", 429, "rate_limited", "too many requests, slow down"),
    EdgeError("502 503 504", "@unavailable", 503, "unavailable", "service unavailable, retry"),
)


API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The app's policy: its own scripts, styles and worker only (no inline script or style, no
# eval); network to this origin, its WebSocket, and the S3 endpoint (presigned uploads and
# downloads); images and media from the same two places, nothing else. $chat_ws_origins and
# $chat_s3_origin are maps at the http level (the template), so both renderings' servers match.
APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; worker-src 'self'; "
    "connect-src 'self' $chat_ws_origins $chat_s3_origin; img-src 'self' $chat_s3_origin; "
    "media-src 'self' $chat_s3_origin; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _headers(indent: str, csp: str = API_CSP) -> list[str]:
    """The headers of every answer; a location with its own add_header must repeat them all."""
    return [
        f"{indent}add_header X-Content-Type-Options nosniff always;",
        f"{indent}add_header X-Frame-Options DENY always;",
        f"{indent}add_header Referrer-Policy no-referrer always;",
        f'{indent}add_header Content-Security-Policy "{csp}" always;',
        f"{indent}add_header Cross-Origin-Resource-Policy same-origin always;",
        f"{indent}add_header X-Request-ID $chat_request_id always;",
    ]


def _app_locations(layout: Layout) -> list[str]:
    """/ serves index.html (revalidated every time); /assets/ the hashed files (immutable)."""
    guard = [
        f"            if ($request_method !~ ^(?:{'|'.join(APP_METHODS)})$) {{",
        "                return 405;",
        "            }",
        f"            limit_req zone=chat_api burst={layout.limits.api_burst} nodelay;",
        "            gzip on;",
        "            gzip_types text/css application/javascript;",
        "            gzip_vary on;",
    ]
    return [
        "        # The browser app (web/, built by `make web`). Paths other than these two stay",
        "        # the API's JSON 404.",
        "        location = / {",
        *guard,
        *_headers("            ", APP_CSP),
        '            add_header Cache-Control "no-cache" always;',
        "            try_files /index.html @app_missing;",
        "        }",
        f"        location {APP_ASSETS} {{",
        *guard,
        *_headers("            ", APP_CSP),
        '            add_header Cache-Control "public, max-age=31536000, immutable" always;',
        "            try_files $uri @app_missing;",
        "        }",
        "        location @app_missing {\n"
        + _envelope(404, "not_found", "no such file (is the web app built? run make web)")
        + "        }",
        "",
    ]


def _upstream(route: Route, layout: Layout) -> str:
    resolve = " resolve" if layout.resolver else ""
    # A failed server sits out 2 s, not nginx's 10: a restarted relay or service is back within
    # that, and with every server of a group out, clients would get 502 until the timeout ends.
    servers = "".join(
        f"        server {route.host}:{port}{resolve} max_fails=1 fail_timeout=2s;\n"
        for port in route.ports
    )
    balance = "        least_conn;\n" if route.websocket else ""
    # A shared zone: least_conn counts connections across workers (and `resolve` needs it).
    zone = f"        zone {route.name} 64k;\n"
    return f"    upstream {route.name} {{\n{zone}{balance}{servers}        keepalive 16;\n    }}\n"


def _allow_map(routes: Sequence[Route]) -> str:
    """``$chat_allow``: what the location a URI falls in serves (empty: no such route).

    A map, not a ``set`` in each location: nginx refuses TRACE before choosing a location, and
    the 405 it produces still needs the right ``Allow``. Longest prefix first, like locations.
    """
    lines = [
        "    map $uri $chat_allow {",
        f'        "/healthz" "{", ".join(HEALTH_METHODS)}";',
        f'        "/" "{", ".join(APP_METHODS)}";',
        f'        "~^{re.escape(APP_ASSETS)}" "{", ".join(APP_METHODS)}";',
    ]
    for route in sorted(routes, key=lambda r: len(r.location), reverse=True):
        lines.append(f'        "~^{re.escape(route.location)}" "{route.allow}";')
    lines += ['        default "";', "    }"]
    return "\n".join(lines) + "\n"


def _guarded_methods(route: Route) -> str:
    """The methods a location lets through to its upstream.

    OPTIONS goes through too (except to the relays): only the service knows each path's exact
    methods, and answers OPTIONS with its own 405 and that path's ``Allow``.
    """
    extra = () if route.websocket else ("OPTIONS",)
    return "|".join((*route.methods, *extra))


def _location(route: Route, layout: Layout) -> str:
    methods = _guarded_methods(route)
    lines = [
        f"        location {route.location} {{",
        f"            if ($request_method !~ ^(?:{methods})$) {{",
        "                return 405;",
        "            }",
        f"            limit_req zone=chat_api burst={layout.limits.api_burst} nodelay;",
    ]
    if route.limited:
        lines.append(
            f"            limit_req zone=chat_auth burst={layout.limits.auth_burst} nodelay;"
        )
    if route.write_limited:
        lines.append(
            f"            limit_req zone=chat_writes burst={layout.limits.write_burst} nodelay;"
        )
    lines += [
        f"            proxy_pass http://{route.name};",
        "            proxy_http_version 1.1;",
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Request-ID $chat_request_id;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        "            proxy_set_header X-Real-IP $remote_addr;",
    ]
    if route.websocket:
        lines += [
            f"            limit_conn chat_ws {layout.limits.ws_connections_per_address};",
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
        *_headers("        "),
        "",
        "        # Requests in progress per address; the WebSocket location has its own cap.",
        f"        limit_conn chat_conns {layout.limits.requests_in_flight_per_address};",
        "",
        "        # Errors nginx itself produces answer in the API's JSON error envelope. The",
        "        # services' own errors (a 405 from aiohttp included) pass through untouched.",
        "        error_page 405 = @method_not_allowed;",
        *(e.directive() for e in EDGE_ERRORS),
        "",
        "        location = /healthz {",
        f"            if ($request_method !~ ^(?:{'|'.join(HEALTH_METHODS)})$) {{",
        "                return 405;",
        "            }",
        "            default_type application/json;",
        '            return 200 \'{"status":"ok"}\';',
        "        }",
        "",
        "        location @method_not_allowed {",
        *_headers("            "),
        "            add_header Allow $chat_allow always;",
        "            default_type application/json;",
        '            if ($chat_allow = "") {',
        "                " + _return(404, "not_found", "no such route"),
        "            }",
        "            " + _return(405, "method_not_allowed", "method not allowed on this route"),
        "        }",
        *(e.location() for e in EDGE_ERRORS),
        "",
        *_app_locations(layout),
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
        "@@REQUEST_ID_PATTERN@@": CORRELATION_ID_RE.pattern,
        "@@ALLOW_MAP@@": _allow_map(routes),
        "@@AUTH_RATE@@": str(layout.limits.auth_rate_per_s),
        "@@API_RATE@@": str(layout.limits.api_rate_per_s),
        "@@WRITE_RATE@@": str(layout.limits.write_rate_per_s),
        "@@MAX_BODY@@": layout.max_body,
        "@@RESOLVER@@": resolver,
        "@@UPSTREAMS@@": "".join(_upstream(r, layout) for r in routes),
        "@@LISTEN@@": layout.listen,
        "@@SERVER_BODY@@": _server_body(routes, layout),
        "@@TLS_EXAMPLE@@": _tls_example(routes, layout) if layout.tls_example else "",
        "@@WEB_ROOT@@": layout.web_root,
        "@@S3_ORIGIN@@": layout.s3_origin,
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
    limits: EdgeLimits | None = None,
    web_root: Path = LOCAL_WEB_ROOT,
    s3_origin: str = "http://127.0.0.1:7070",
    temp_dir: Path | None = None,
) -> str:
    """The local stack's nginx.conf: a foreground process with every path under the stack folder
    (``temp_dir`` and ``web_root`` elsewhere when its workers cannot reach that folder)."""
    layout = Layout(
        header="Generated by deploy/local/nginx.py from deploy/nginx/nginx.conf.template; "
        "do not edit the copy.",
        listen=listen,
        pid=str(prefix / "nginx.pid"),
        error_log=str(log_dir / "nginx-error.log"),
        access_log=str(log_dir / "nginx-access.log"),
        temp_dir=str(temp_dir or prefix / "tmp"),
        limits=limits or EdgeLimits(),
        web_root=str(web_root),
        s3_origin=s3_origin,
    )
    return render(layout, routes)


# The compose services nginx proxies to, and their ports (the Settings defaults).
PRODUCTION_ROUTES = chat_routes(
    relay_ports=[8103],
    auth_ports=[8101],
    management_ports=[8102],
    relay_host="relay",
    auth_host="auth",
    management_host="management",
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
        web_root=PRODUCTION_WEB_ROOT,
        s3_origin=PRODUCTION_S3_ORIGIN,
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
