"""The edge's config: local and production renderings in step, limits, methods and error bodies."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chatcore.logging import CORRELATION_ID_RE
from deploy.local.config import StackConfig
from deploy.local.nginx import (
    API_CSP,
    APP_CSP,
    PRODUCTION_ROUTES,
    PRODUCTION_S3_ORIGIN,
    PRODUCTION_WEB_ROOT,
    EdgeLimits,
    Route,
    chat_routes,
    render_nginx_conf,
    render_production_conf,
)

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
_RETURN = re.compile(r"return (\d{3}) '(.*)';")


def _local(tmp_path: Path, limits: EdgeLimits | None = None) -> str:
    cfg = StackConfig(home=tmp_path, cache=tmp_path)
    routes = chat_routes(
        relay_ports=cfg.relay_ports,
        auth_ports=cfg.auth_ports,
        management_ports=cfg.management_ports,
    )
    return render_nginx_conf(
        listen="127.0.0.1:8080", prefix=tmp_path, log_dir=tmp_path, routes=routes, limits=limits
    )


def _first_server(text: str) -> list[str]:
    """The plain server block's lines, minus what differs by design (listen, log paths)."""
    body = text.split("    server {\n", 1)[1].split("\n    }\n", 1)[0]
    lines = []
    for line in body.splitlines():
        if line.strip().startswith("listen "):
            continue
        lines.append(re.sub(r"error_log \S+ crit;", "error_log <log> crit;", line))
    return lines


def _location(text: str, prefix: str) -> str:
    return text.split(f"        location {prefix} {{\n", 1)[1].split("\n        }\n", 1)[0]


def test_local_and_production_servers_are_the_same(tmp_path: Path) -> None:
    """The local stack's server block is production's, line for line (but listen and logs)."""
    assert _first_server(_local(tmp_path)) == _first_server(render_production_conf())


def test_request_id_is_validated_with_the_services_pattern(tmp_path: Path) -> None:
    """Both renderings keep a client X-Request-ID only if it matches CORRELATION_ID_RE."""
    expected = (
        "    map $http_x_request_id $chat_request_id {\n"
        f'        "~{CORRELATION_ID_RE.pattern}" $http_x_request_id;\n'
        "        default $request_id;\n"
        "    }\n"
    )
    for text in (_local(tmp_path), render_production_conf()):
        assert expected in text
        # The services' copy of the header is hidden: each answer carries nginx's one only.
        assert "    proxy_hide_header X-Request-ID;\n" in text
        assert "$http_x_request_id" not in text.replace(expected, "")


def test_every_nginx_error_body_is_json_and_echoes_only_the_checked_id() -> None:
    """Each body nginx writes parses as the error envelope once the checked id is filled in."""
    text = render_production_conf()
    bodies = [(int(s), b) for s, b in _RETURN.findall(text) if not b.startswith('{"status"')]
    statuses = {status for status, _body in bodies}
    assert statuses >= {404, 405, 413, 429, 503}
    assert re.search(r"error_page 502 503 504 = @unavailable;", text)
    for status, body in bodies:
        assert re.findall(r"\$\w+", body) == ["$chat_request_id"], body
        parsed = json.loads(body.replace("$chat_request_id", "r-1"))
        assert set(parsed) == {"error"}
        assert set(parsed["error"]) == {"code", "message", "request_id"}, status
        assert parsed["error"]["request_id"] == "r-1"


def test_limits_on_every_api_route() -> None:
    """/v1/ has the generous per-address limit, auth routes the strict one too, ws a socket cap,
    and every request a cap on those in progress per address."""
    text = render_production_conf()
    limits = EdgeLimits()
    assert (
        f"limit_req_zone $binary_remote_addr zone=chat_api:10m rate={limits.api_rate_per_s}r/s;"
        in text
    )
    assert (
        f"limit_req_zone $binary_remote_addr zone=chat_auth:10m rate={limits.auth_rate_per_s}r/s;"
        in text
    )
    api = f"limit_req zone=chat_api burst={limits.api_burst} nodelay;"
    auth = f"limit_req zone=chat_auth burst={limits.auth_burst} nodelay;"
    conn = f"limit_conn chat_ws {limits.ws_connections_per_address};"
    for route in PRODUCTION_ROUTES:
        block = _location(text, route.location)
        assert api in block, route.location
        assert (auth in block) == route.location.startswith(("/v1/auth/", "/v1/users")), (
            route.location
        )
        assert (conn in block) == route.websocket, route.location
    assert limits.ws_connections_per_address >= 1000
    assert limits.api_burst >= 1000
    # Every other request: a cap on those in progress per address, and slow headers cut short.
    assert f"limit_conn chat_conns {limits.requests_in_flight_per_address};" in text
    assert "client_header_timeout 10s;" in text
    assert "client_body_timeout 10s;" in text


def test_stack_limits_come_from_chatstack_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHATSTACK_NGINX_* move the local stack's limits (benchmarks raise the socket cap)."""
    monkeypatch.setenv("CHATSTACK_NGINX_WS_CONNECTIONS_PER_ADDRESS", "20000")
    monkeypatch.setenv("CHATSTACK_NGINX_API_RATE", "7")
    monkeypatch.setenv("CHATSTACK_NGINX_API_BURST", "9")
    monkeypatch.setenv("CHATSTACK_NGINX_REQUESTS_PER_ADDRESS", "600")
    limits = StackConfig.from_env().edge_limits
    assert limits == EdgeLimits(
        api_rate_per_s=7,
        api_burst=9,
        ws_connections_per_address=20000,
        requests_in_flight_per_address=600,
    )
    text = _local(tmp_path, limits)
    assert "limit_conn chat_ws 20000;" in text
    assert "limit_conn chat_conns 600;" in text
    assert "zone=chat_api:10m rate=7r/s;" in text
    assert "limit_req zone=chat_api burst=9 nodelay;" in text


def _declared_methods() -> dict[str, set[str]]:
    paths = json.loads(OPENAPI.read_text())["paths"]
    verbs = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {path: {m.upper() for m in item if m in verbs} for path, item in paths.items()}


def _route_for(path: str) -> Route:
    matching = [r for r in PRODUCTION_ROUTES if path.startswith(r.location)]
    return max(matching, key=lambda r: len(r.location))


def test_each_route_allows_exactly_what_the_api_declares_under_it() -> None:
    """Allow for a location = the methods OpenAPI declares below it (HEAD with GET), no more."""
    served: dict[str, set[str]] = {r.location: set() for r in PRODUCTION_ROUTES}
    for path, methods in _declared_methods().items():
        served[_route_for(path).location] |= methods | ({"HEAD"} if "GET" in methods else set())
    served["/v1/ws"] = {"GET"}  # the WebSocket handshake, not in the OpenAPI document
    for route in PRODUCTION_ROUTES:
        assert set(route.methods) == served[route.location], route.location


def test_undeclared_methods_answer_405_with_allow() -> None:
    """Every proxied location refuses other methods itself; the 405 names what it serves."""
    text = render_production_conf()
    assert "error_page 405 = @method_not_allowed;" in text
    handler = _location(text, "@method_not_allowed")
    assert "add_header Allow $chat_allow always;" in handler
    assert "add_header X-Request-ID $chat_request_id always;" in handler
    for route in PRODUCTION_ROUTES:
        block = _location(text, route.location)
        passed = (*route.methods, *(() if route.websocket else ("OPTIONS",)))
        assert f"if ($request_method !~ ^(?:{'|'.join(passed)})$) {{" in block
        assert f'"~^{route.location}" "{", ".join(route.methods)}";' in text


def _nginx_t(folder: Path, text: str) -> None:
    """nginx -t accepts ``text`` as its whole config (skipped when nginx is not installed)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.skip("nginx not installed (deploy/local/install.sh installs it)")
    conf = folder / "nginx.conf"
    conf.write_text(text)
    result = subprocess.run(
        [binary, "-t", "-q", "-p", str(folder), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_local_rendering_passes_nginx_t(tmp_path: Path) -> None:
    """nginx -t accepts the local stack's config with every limit and handler in it."""
    (tmp_path / "tmp").mkdir()
    _nginx_t(tmp_path, _local(tmp_path))


def _self_signed(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_production_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    """nginx -t accepts production's config, TLS example uncommented (hosts mapped to loopback)."""
    _self_signed(tmp_path)
    # The machine's nginx may predate `resolve` (1.27.3) and `http2 on` (1.25.1): leave those out;
    # compose's nginx:1.28 has both.
    text = render_production_conf(resolver=None)
    head, tls = text.split("    # server {\n")
    tls_lines = [
        "    " + line.removeprefix("    #").removeprefix(" ") if line.startswith("    #") else line
        for line in ["    # server {", *tls.splitlines()]
    ]
    text = head + "\n".join(line for line in tls_lines if "http2 on;" not in line) + "\n"
    for route in PRODUCTION_ROUTES:
        text = text.replace(f"server {route.host}:", "server 127.0.0.1:")
    text = text.replace("/etc/nginx/certs", str(tmp_path)).replace(
        "pid /tmp/nginx.pid", f"pid {tmp_path}/nginx.pid"
    )
    # What the nginx image's entrypoint does at start in compose (envsubst of this one variable).
    text = text.replace(PRODUCTION_S3_ORIGIN, "https://files.example.com")
    assert "listen 8443 ssl;" in text
    _nginx_t(tmp_path, text)


def _app_block(text: str, prefix: str) -> list[str]:
    return [line.strip() for line in _location(text, prefix).splitlines()]


def test_app_is_served_with_a_strict_policy_and_the_api_headers(tmp_path: Path) -> None:
    """/ and /assets/ carry the API's security headers, but a CSP of their own: no inline code."""
    text = _local(tmp_path)
    api_headers = [h.strip() for h in _server_headers(text)]
    assert len(api_headers) == 6
    for prefix in ("= /", "/assets/"):
        block = _app_block(text, prefix)
        headers = [line for line in block if line.startswith("add_header ")]
        csp = f'add_header Content-Security-Policy "{APP_CSP}" always;'
        assert csp in headers, prefix
        others = [h for h in headers if "Content-Security-Policy" not in h]
        assert set(api_headers) - {
            f'add_header Content-Security-Policy "{API_CSP}" always;'
        } <= set(others), prefix
    assert "'unsafe-inline'" not in APP_CSP
    assert "'unsafe-eval'" not in APP_CSP
    assert "default-src 'self'" in APP_CSP
    assert "connect-src 'self' $chat_ws_origins $chat_s3_origin" in APP_CSP


def _server_headers(text: str) -> list[str]:
    """The API's headers: set once at server level (the proxied locations inherit them)."""
    server = "\n".join(_first_server(text))
    head = server.split("        error_page", 1)[0]
    return [line for line in head.splitlines() if "add_header" in line]


def test_index_revalidates_and_hashed_assets_are_immutable(tmp_path: Path) -> None:
    """index.html is never used without revalidation; /assets/ (hashed names) is cached a year."""
    text = _local(tmp_path)
    assert 'add_header Cache-Control "no-cache" always;' in _app_block(text, "= /")
    assert 'add_header Cache-Control "public, max-age=31536000, immutable" always;' in _app_block(
        text, "/assets/"
    )
    for prefix in ("= /", "/assets/"):
        assert "if ($request_method !~ ^(?:GET|HEAD)$) {" in _app_block(text, prefix)


def test_csp_origins_come_from_the_stack_and_from_compose(tmp_path: Path) -> None:
    """Local: the stack's S3 port and web/dist; production: the compose variable and image path."""
    cfg = StackConfig(home=tmp_path, cache=tmp_path)
    routes = chat_routes(
        relay_ports=cfg.relay_ports,
        auth_ports=cfg.auth_ports,
        management_ports=cfg.management_ports,
    )
    local = render_nginx_conf(
        listen="127.0.0.1:8080",
        prefix=tmp_path,
        log_dir=tmp_path,
        routes=routes,
        web_root=tmp_path / "dist",
        s3_origin="http://127.0.0.1:17070",
    )
    assert 'default "http://127.0.0.1:17070";' in local
    assert f"    root {tmp_path / 'dist'};" in local
    production = render_production_conf()
    assert f'default "{PRODUCTION_S3_ORIGIN}";' in production
    assert f"    root {PRODUCTION_WEB_ROOT};" in production
    # Only a well-formed Host is echoed into the policy's WebSocket origins.
    assert '"~^[A-Za-z0-9.:\\[\\]-]+$" "ws://$http_host wss://$http_host";' in production


def test_a_failed_upstream_server_sits_out_two_seconds_not_ten() -> None:
    """Every upstream server is retried 2 s after a failure, so a restarted relay is used again."""
    servers = [
        line.strip()
        for line in render_production_conf().splitlines()
        if line.strip().startswith("server ") and ":" in line and "{" not in line
    ]
    assert servers
    assert all(s.endswith("max_fails=1 fail_timeout=2s;") for s in servers), servers
