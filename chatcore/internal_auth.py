"""Authentication of the internal gRPC API (relays -> controllers) with a shared secret.

Relays send ``CHAT_INTERNAL_TOKEN`` in the ``x-chat-internal-token`` metadata of every call; the
controller's interceptor refuses any other call with UNAUTHENTICATED before a handler runs. The
standard health service stays open, so probes need no secret. Compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from chatcore.errors import ConfigError

INTERNAL_TOKEN_METADATA = "x-chat-internal-token"  # noqa: S105 - a header name
_OPEN_PREFIX = "/grpc.health.v1.Health/"
# Long enough to be a real secret; the local stack generates 43 characters.
MIN_TOKEN_CHARS = 16

# The stubs make RpcMethodHandler generic; the runtime class is not subscriptable.
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]


def required_token(token: str) -> str:
    """The configured secret, or ``ConfigError`` when it is missing or too short to be one."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"CHAT_INTERNAL_TOKEN must be set to a secret of at least {MIN_TOKEN_CHARS} characters"
        )
    return token


def call_metadata(token: str) -> tuple[str, str]:
    """The metadata pair a relay adds to every call."""
    return (INTERNAL_TOKEN_METADATA, token)


def presented_token(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == INTERNAL_TOKEN_METADATA and isinstance(value, str):
            return value
    return ""


_DENIED = "internal token missing or wrong"


async def _deny_once(_request: Any, context: aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)


async def _deny_streaming(
    _request: Any, context: aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    # A response-streaming handler is an async generator; this one ends before its first item.
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)
    yield  # pragma: no cover - abort raises


def _denial(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that only refuses the call."""
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny_streaming)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny_once)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny_streaming)
    return grpc.unary_unary_rpc_method_handler(_deny_once)


class InternalTokenInterceptor(aio.ServerInterceptor):
    """Lets a call through only when it carries the shared secret (health checks excepted)."""

    def __init__(self, token: str) -> None:
        self._token = required_token(token).encode()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_OPEN_PREFIX):
            return handler
        presented = presented_token(handler_call_details.invocation_metadata).encode()
        if hmac.compare_digest(presented, self._token):
            return handler
        return _denial(handler)
