"""aiohttp plumbing shared by the HTTP services: the error envelope, request ids, health, metrics.

Handlers raise ``ChatError`` subclasses; ``envelope_middleware`` is the one boundary that turns
them (and aiohttp's own HTTP exceptions, and anything unexpected) into the contract's envelope
``{"error": {"code", "message", "request_id"}}`` with ``X-Request-ID`` on every response.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from chatcore.errors import (
    ChatError,
    ConfigError,
    InvalidInput,
    MalformedBody,
    RateLimited,
    TooLarge,
    Unavailable,
)
from chatcore.logging import (
    CORRELATION_ID_RE,
    bind_context,
    get_logger,
    new_request_id,
    reset_context,
)
from chatcore.proxies import is_trusted
from chatcore.tokens import AccessClaims, JwtVerifier, bearer_token

REQUEST_ID_HEADER = "X-Request-ID"
CORRELATION_ID_HEADER = "X-Correlation-ID"
_REQUEST_ID_KEY = web.RequestKey("chat_request_id", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[bool]]

_log = get_logger("chatcore.http")

# aiohttp's own HTTP errors (routing, size limits) mapped to the contract's codes.
_HTTP_CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def ok(data: Any, *, meta: Mapping[str, Any] | None = None, status: int = 200) -> web.Response:
    """A success envelope ``{"data": ..., "meta": {...}}``."""
    return web.json_response({"data": data, "meta": dict(meta or {})}, status=status)


def error_body(
    code: str, message: str, request_id: str, *, details: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The contract's failure envelope as a plain object (also rendered by the relay)."""
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details:
        error["details"] = dict(details)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    details: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A failure envelope; ``details`` carries per-field reasons for 422s."""
    body = error_body(code, message, request_id, details=details)
    return web.json_response(body, status=status, headers=headers)


def request_id(request: web.Request) -> str:
    """The id of the request being served (set by ``envelope_middleware``)."""
    value = request.get(_REQUEST_ID_KEY)
    return value if isinstance(value, str) else ""


def json_integer(value: object) -> int | None:
    """A JSON integer as a Python int: an int (a bool is not one) or a float with no fraction
    (JSON Schema's ``integer`` counts 5.0); None for anything else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


async def read_json_object(request: web.Request, *, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object: 413 if too big, 400 if not JSON, 422 if not an object."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"request body exceeds {max_bytes} bytes")
    # ``read(n)`` returns what has arrived so far, not n bytes: a body in several TCP segments
    # needs reading until its end (or until it is too big).
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(max_bytes + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"request body exceeds {max_bytes} bytes")
    raw = b"".join(chunks)
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError: not JSON or not UTF-8, and also integers over Python's 4,300-digit limit;
        # RecursionError: nesting deeper than the parser's stack. All of them are the client's.
        raise MalformedBody("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("request body must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class HttpMetrics:
    """Per-service request metrics, registered in the service's own registry."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> HttpMetrics:
        return cls(
            registry=registry,
            requests=Counter(
                "http_requests_total",
                "HTTP requests by route template, method and status",
                ["route", "method", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
                ["route"],
                registry=registry,
            ),
        )


def _route_label(request: web.Request) -> str:
    # The route template, never the raw path: ids in paths would explode label cardinality.
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _client_id(value: str | None) -> str | None:
    return value if value is not None and CORRELATION_ID_RE.fullmatch(value) else None


def envelope_middleware(metrics: HttpMetrics) -> Any:
    """Middleware: request/correlation ids, one access log line, metrics and the error envelope."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = _client_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        correlation = _client_id(request.headers.get(CORRELATION_ID_HEADER)) or rid
        request[_REQUEST_ID_KEY] = rid
        context = bind_context(request_id=rid, correlation_id=correlation)
        started = time.perf_counter()
        try:
            response = await _dispatch(request, handler, rid)
            response.headers[REQUEST_ID_HEADER] = rid
            # Answers are one user's data, or change from one second to the next: no cache (a
            # browser's, a shared proxy's) keeps them unless the handler says otherwise.
            response.headers.setdefault("Cache-Control", "no-store")
            elapsed = time.perf_counter() - started
            route = _route_label(request)
            metrics.requests.labels(route, request.method, str(response.status)).inc()
            metrics.latency.labels(route).observe(elapsed)
            _log.info(
                "http_request",
                method=request.method,
                path=request.path,  # never the query string: it may carry a token
                status=response.status,
                duration_ms=round(elapsed * 1000, 2),
            )
            return response
        finally:
            reset_context(context)

    return middleware


async def _dispatch(request: web.Request, handler: Handler, rid: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConfigError as exc:
        # A configuration problem is the operator's: its text names variables and values.
        _log.error("request_failed", code=exc.code, error=exc.message)
        return error_response(500, "internal", "internal server error", rid)
    except ChatError as exc:
        if exc.http_status >= 500:
            _log.warning("request_failed", code=exc.code, error=exc.message)
        return error_response(
            exc.http_status,
            exc.code,
            exc.public_message,
            rid,
            details=exc.details,
            headers=_retry_after(exc),
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "error")
        # A 405 says which methods the route has (RFC 9110); aiohttp computed the list.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, exc.reason, rid, headers=allow)
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("unhandled_error")
        return error_response(500, "internal", "internal server error", rid)


def _retry_after(exc: ChatError) -> dict[str, str] | None:
    """``Retry-After`` for errors that know when to come back (429s, a busy 503)."""
    if not isinstance(exc, RateLimited | Unavailable):
        return None
    wait = getattr(exc, "retry_after", None)
    if not isinstance(wait, int | float):
        return None
    return {"Retry-After": str(max(1, math.ceil(wait)))}


class Health:
    """``/healthz`` (the process answers) and ``/readyz`` (every named dependency answers)."""

    def __init__(self, checks: Mapping[str, ReadinessCheck], *, timeout_s: float = 2.0) -> None:
        self._checks = dict(checks)
        self._timeout_s = timeout_s
        self.draining = False

    async def failing(self) -> list[str]:
        """Names of the checks that fail or time out now."""

        async def run(name: str, check: ReadinessCheck) -> str | None:
            try:
                return None if await asyncio.wait_for(check(), self._timeout_s) else name
            except Exception:
                return name

        results = await asyncio.gather(*(run(n, c) for n, c in self._checks.items()))
        failing = [name for name in results if name is not None]
        if self.draining:
            failing.append("draining")
        return failing

    async def healthz(self, _request: web.Request) -> web.Response:
        return ok({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        failing = await self.failing()
        if failing:
            return error_response(
                503, "unavailable", f"not ready: {', '.join(failing)}", request_id(request)
            )
        return ok({"status": "ready"})


def add_ops_routes(app: web.Application, health: Health, registry: CollectorRegistry) -> None:
    """Mount ``/healthz``, ``/readyz`` and ``/metrics`` on an app."""

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics)


def make_app(
    *,
    registry: CollectorRegistry,
    health: Health,
    max_body_bytes: int,
    middlewares: Sequence[Any] = (),
) -> web.Application:
    """An aiohttp app with the envelope middleware, a body size cap and the ops routes."""
    metrics = HttpMetrics.create(registry)
    app = web.Application(
        middlewares=[envelope_middleware(metrics), *middlewares], client_max_size=max_body_bytes
    )
    add_ops_routes(app, health, registry)
    return app


async def authenticate(request: web.Request, verifier: JwtVerifier) -> AccessClaims:
    """The verified claims of the request's ``Authorization: Bearer`` token (401 otherwise)."""
    return await verifier.verify(bearer_token(request.headers.get("Authorization"), None))


def client_ip(request: web.Request, trusted_proxies: Sequence[str]) -> str:
    """The caller's address: nginx's ``X-Real-IP`` when the peer is a trusted proxy."""
    peer = request.remote or "unknown"
    if is_trusted(peer, trusted_proxies):
        forwarded = request.headers.get("X-Real-IP", "").strip()
        if forwarded and len(forwarded) <= 45:
            return forwarded
    return peer
