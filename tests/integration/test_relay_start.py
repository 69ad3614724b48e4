"""Starting a relay on the stack's Kafka, against an in-process controller and key set.

The relay's id is fixed (from the port it really bound) before the controller or a client sees
it, and a start that fails half-way closes everything it had opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519
from grpc import aio
from prometheus_client import CollectorRegistry

from chatclient import ChatClient
from chatcore.errors import Unavailable
from chatcore.internal_auth import Continuation, InternalTokenInterceptor
from chatcore.lifecycle import serve_app
from chatcore.proto.chat.v1 import chat_pb2_grpc
from chatcore.rdkafka import RdKafkaProducer
from chatcore.settings import Settings
from services.auth.keys import KeyRing, SigningKey, TokenIssuer
from services.controller.metrics import ControllerMetrics
from services.controller.registry import SubscriptionRegistry
from services.controller.servicer import ControllerServicer
from services.controller.streams import StreamHub
from services.relay import server
from services.relay.connection import Relay
from services.relay.controller_link import CORRELATION_METADATA
from tests.unit.controller_fakes import MemoryDirectory

SUBSCRIBE = "/chat.v1.Controller/Subscribe"


class _SubscribeMetadata(aio.ServerInterceptor):
    """Records the metadata of every Subscribe call."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler_call_details.method == SUBSCRIBE:
            pairs = handler_call_details.invocation_metadata or ()
            self.seen.append({str(k): str(v) for k, v in pairs})
        return await continuation(handler_call_details)


@dataclasses.dataclass
class _Controller:
    address: str
    hub: StreamHub
    metadata: _SubscribeMetadata

    def relay_ids(self) -> list[str]:
        """The relay ids of the open Subscribe streams (from their first request)."""
        return [s.relay_id for s in list(self.hub._streams.values())]


@dataclasses.dataclass
class _Keys:
    jwks_url: str
    issuer: TokenIssuer


async def _until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)


@pytest.fixture
async def controller(settings: Settings) -> AsyncIterator[_Controller]:
    """A Controller gRPC service over an in-memory hub and directory, on a free port."""
    hub = StreamHub(
        SubscriptionRegistry(max_batch_bytes=1 << 20),
        capacity=100,
        metrics=ControllerMetrics.create(CollectorRegistry()),
    )
    metadata = _SubscribeMetadata()
    grpc_server = aio.server(
        interceptors=[metadata, InternalTokenInterceptor(settings.internal_token)]
    )
    chat_pb2_grpc.add_ControllerServicer_to_server(
        ControllerServicer(hub, MemoryDirectory()), grpc_server
    )
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    try:
        yield _Controller(f"127.0.0.1:{port}", hub, metadata)
    finally:
        await grpc_server.stop(None)


@pytest.fixture
async def keys(settings: Settings) -> AsyncIterator[_Keys]:
    """A signing key whose JWKS is served on a free port, and an issuer of tokens with it."""
    ring = KeyRing([SigningKey.from_private_key(ed25519.Ed25519PrivateKey.generate())])
    issuer = TokenIssuer(ring, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_s=60)

    async def jwks(_request: web.Request) -> web.Response:
        return web.json_response(ring.jwks())

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    http = await serve_app(app, host="127.0.0.1", port=0, drain_timeout_s=1.0)
    try:
        yield _Keys(f"http://127.0.0.1:{http.port}/jwks", issuer)
    finally:
        await http.stop()


def _relay_settings(settings: Settings, controller: _Controller, keys: _Keys) -> Settings:
    return dataclasses.replace(
        settings,
        relay_id="",  # no CHAT_RELAY_ID: the relay names itself
        relay_producer="rdkafka",
        controller_addrs=(controller.address,),
        jwks_url=keys.jwks_url,
    )


async def test_an_automatic_relay_id_names_the_bound_port_in_hello_and_at_the_controller(
    settings: Settings, controller: _Controller, keys: _Keys
) -> None:
    """With port 0 and no CHAT_RELAY_ID, hello and the controller's Subscribe (request and
    metadata) carry one id, <host>-<the port really bound>."""
    running = await server.start(_relay_settings(settings, controller, keys), port=0)
    try:
        await _until(lambda: running.relay.link.all_up)
        token = keys.issuer.issue(uuid.uuid4().hex).token
        async with await ChatClient.connect(f"ws://127.0.0.1:{running.port}/v1/ws", token) as c:
            said_in_hello = c.hello["relay"]
        at_controller = controller.relay_ids()
    finally:
        await running.stop()

    assert running.port != 0
    assert said_in_hello == f"{socket.gethostname()}-{running.port}"
    assert at_controller == [said_in_hello]
    assert [m[CORRELATION_METADATA] for m in controller.metadata.seen] == [said_in_hello]


class _Opened:
    """What a start opened, recorded by wrapping the factories the relay's wiring calls."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.sessions: list[aiohttp.ClientSession] = []
        self.producers: list[RdKafkaProducer] = []
        self.relays: list[Relay] = []

    def recording(self, factory: Callable[..., Any], into: list[Any]) -> Callable[..., Any]:
        def make(*args: Any, **kwargs: Any) -> Any:
            made = factory(*args, **kwargs)
            into.append(made)
            return made

        return make


async def _no_websocket_server(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError("the WebSocket server could not start")


def _poll_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "rdkafka-poll" and t.is_alive()}


@pytest.mark.parametrize(
    ("failure", "error"),
    [("kafka unreachable", Unavailable), ("websocket server fails", OSError)],
)
async def test_a_start_that_fails_half_way_closes_what_it_opened(
    settings: Settings,
    controller: _Controller,
    keys: _Keys,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    error: type[Exception],
) -> None:
    """Kafka not answering, or the WebSocket server failing after the producer, the controller
    link and the audit started: start() raises and leaves no socket, HTTP session, producer poll
    thread or task behind."""
    relay_settings = _relay_settings(settings, controller, keys)
    if failure == "kafka unreachable":
        # Nothing listens on port 1; the producer gives up after the request timeout.
        relay_settings = dataclasses.replace(
            relay_settings, kafka_bootstrap="127.0.0.1:1", kafka_request_timeout_ms=1000
        )
    else:
        monkeypatch.setattr(server, "serve", _no_websocket_server)
    opened = _Opened()
    monkeypatch.setattr(server, "_bind", opened.recording(server._bind, opened.sockets))
    monkeypatch.setattr(
        aiohttp, "ClientSession", opened.recording(aiohttp.ClientSession, opened.sessions)
    )
    monkeypatch.setattr(
        server, "RdKafkaProducer", opened.recording(RdKafkaProducer, opened.producers)
    )
    monkeypatch.setattr(server, "Relay", opened.recording(Relay, opened.relays))
    threads_before = _poll_threads()
    tasks_before = asyncio.all_tasks()

    with pytest.raises(error):
        await server.start(relay_settings, port=0)

    assert len(opened.sockets) == len(opened.sessions) == len(opened.producers) == 1
    assert len(opened.relays) == (0 if failure == "kafka unreachable" else 1)
    assert opened.sockets[0].fileno() == -1, "listening socket left open"
    assert opened.sessions[0].closed, "JWKS session left open"
    assert _poll_threads() <= threads_before, "rdkafka-poll thread left running"
    for relay in opened.relays:
        assert not relay.link.up
    current = asyncio.current_task()
    # The in-process controller's gRPC server waits for its next call in a task of its own,
    # created when it accepted the relay's Subscribe: the server's, not the relay's.
    leftover = {
        t
        for t in asyncio.all_tasks() - tasks_before
        if not t.done()
        and t is not current
        and "_request_registered_call" not in getattr(t.get_coro(), "__qualname__", "")
    }
    # The in-process controller's handler of the cancelled Subscribe call ends a moment after the
    # cancellation reaches it; a task the relay left behind would still be pending after the wait.
    if leftover:
        _, leftover = await asyncio.wait(leftover, timeout=5)
    assert not leftover, leftover
