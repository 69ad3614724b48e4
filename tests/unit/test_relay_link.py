"""The relay's controller link against the real Controller servicer (in-memory hub, no Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from chatcore.internal_auth import InternalTokenInterceptor
from chatcore.messages import MAX_CHANNELS_PER_REQUEST
from chatcore.proto.chat.v1 import chat_pb2, chat_pb2_grpc
from services.controller.hooks import ControllerHooks
from services.controller.metrics import ControllerMetrics
from services.controller.registry import Routed, SubscriptionRegistry
from services.controller.servicer import ControllerServicer
from services.controller.streams import CloseReason, StreamHub
from services.relay.controller_link import FIRST_BACKOFF_S, ControllerLink, StreamState
from tests.hold import Hold
from tests.integration.ports import free_port
from tests.unit.controller_fakes import MemoryDirectory, chat_message
from tests.waiting import until

T1, T2 = "a" * 32, "b" * 32
TOKEN = "internal-test-token-0123456789"


class _Controller:
    """A Controller gRPC server on a fixed port that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.hold = Hold()
        self.hub = self._new_hub()
        self._server: aio.Server | None = None

    @staticmethod
    def _new_hub() -> StreamHub:
        metrics = ControllerMetrics.create(CollectorRegistry())
        return StreamHub(
            SubscriptionRegistry(max_batch_bytes=1 << 20), capacity=100, metrics=metrics
        )

    async def start(self) -> None:
        server = aio.server(interceptors=[InternalTokenInterceptor(TOKEN)])
        hooks = ControllerHooks(before_subscription_change=self.hold)
        chat_pb2_grpc.add_ControllerServicer_to_server(
            ControllerServicer(self.hub, MemoryDirectory(), hooks), server
        )
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self, *, graceful: bool) -> None:
        if graceful:
            self.hub.close_all(CloseReason.SHUTDOWN, "bye", drain=True)
        assert self._server is not None
        await self._server.stop(5 if graceful else None)
        self.hub = self._new_hub()

    def channels(self) -> set[str]:
        return {c for s in list(self.hub._streams.values()) for c in self.hub.channels(s)}


@dataclass
class _Relay:
    link: ControllerLink
    channels: set[str]
    ups: list[tuple[str, bool]] = field(default_factory=list)
    confirms: list[tuple[str, int]] = field(default_factory=list)
    batches: list[chat_pb2.DeliveryBatch] = field(default_factory=list)


@pytest.fixture
async def controller() -> AsyncIterator[_Controller]:
    """One controller server on a free port."""
    ctl = _Controller(free_port())
    await ctl.start()
    yield ctl
    await ctl.stop(graceful=False)


@pytest.fixture
async def relay(controller: _Controller) -> AsyncIterator[_Relay]:
    """A link to the controller holding channel T1, its stream UP."""
    relay = _Relay(link=None, channels={T1})  # type: ignore[arg-type]
    relay.link = ControllerLink(
        [f"127.0.0.1:{controller.port}"],
        "relay-test",
        relay.batches.append,
        lambda: sorted(relay.channels),
        token=TOKEN,
        on_stream_up=lambda address, lost: relay.ups.append((address, lost)),
        on_confirmed=lambda address, request_id: relay.confirms.append((address, request_id)),
        max_backoff_s=0.2,
    )
    relay.link.start()
    await until(lambda: relay.link.all_up)
    yield relay
    await relay.link.stop()


def _address(controller: _Controller) -> str:
    return f"127.0.0.1:{controller.port}"


async def test_wait_returns_once_the_controller_confirmed(
    relay: _Relay, controller: _Controller
) -> None:
    """A change is in force at the controller by the time wait() returns with nothing owed."""
    relay.channels.add(T2)
    relay.link.change(add=[T2])
    assert await relay.link.wait(relay.link.ticket(), 5) == frozenset()
    assert controller.channels() == {T1, T2}


async def test_a_held_back_confirmation_times_out_and_is_owed(
    relay: _Relay, controller: _Controller
) -> None:
    """A controller that does not confirm in time is returned as owing a resync."""
    controller.hold.close()
    relay.link.change(add=[T2])
    ticket = relay.link.ticket()
    assert await relay.link.wait(ticket, 0.2) == frozenset({_address(controller)})
    assert relay.confirms == []
    controller.hold.open()
    assert await relay.link.wait(ticket, 5) == frozenset()
    # The late confirmation is reported: the relay pays the sockets that stopped waiting.
    assert relay.confirms == [(_address(controller), ticket[_address(controller)])]


async def test_changes_made_while_the_stream_opens_are_not_lost(controller: _Controller) -> None:
    """A channel added between the stream's first request and its confirmation is subscribed."""
    controller.hold.close()
    channels = {T1}
    link = ControllerLink(
        [_address(controller)], "relay-open", lambda _b: None, lambda: sorted(channels), token=TOKEN
    )
    link.start()
    try:
        await until(lambda: controller.hold.held == 1)
        assert link.state(_address(controller)) is StreamState.OPENING
        channels.add(T2)
        link.change(add=[T2])
        controller.hold.open()
        assert await link.wait(link.ticket(), 5) == frozenset()
        assert controller.channels() == {T1, T2}
    finally:
        await link.stop()


async def test_a_relay_with_more_channels_than_one_request_may_name_opens_its_stream(
    controller: _Controller,
) -> None:
    """100,001 channels go as two requests (one was refused, and the stream retried for ever);
    the stream is UP once the controller has them all, reported as a loss: what was fanned out
    to the second part's channels before its request arrived never came."""
    channels = [f"{n:032x}" for n in range(MAX_CHANNELS_PER_REQUEST + 1)]
    ups: list[bool] = []
    link = ControllerLink(
        [_address(controller)],
        "relay-many",
        lambda _b: None,
        lambda: channels,
        token=TOKEN,
        on_stream_up=lambda _address, lost: ups.append(lost),
    )
    link.start()
    try:
        await until(lambda: link.all_up, timeout_s=30)
        assert link.ticket() == {_address(controller): 2}
        assert controller.channels() == set(channels)
        assert ups == [True]
    finally:
        await link.stop()


async def test_changes_made_while_the_stream_is_down_are_folded_into_the_full_set(
    relay: _Relay, controller: _Controller
) -> None:
    """An add and a remove made while the stream is DOWN are in force once it is UP again."""
    await controller.stop(graceful=False)
    await until(lambda: relay.link.state(_address(controller)) is StreamState.DOWN)
    relay.channels.add(T2)
    relay.link.change(add=[T2])
    relay.channels.discard(T1)
    relay.link.change(remove=[T1])
    assert relay.link.ticket() == {}  # nothing was sent: the stream had nowhere to send it
    await controller.start()
    await until(lambda: len(relay.ups) == 2)
    assert controller.channels() == {T2}


async def test_a_cut_stream_comes_back_and_reports_the_loss(
    relay: _Relay, controller: _Controller
) -> None:
    """After a cut the link reconnects, resends its set, and says deliveries may be lost."""
    relay.link.cut(_address(controller))
    await until(lambda: len(relay.ups) == 2)
    assert relay.ups[-1] == (_address(controller), True)
    assert controller.channels() == {T1}


async def test_graceful_restart_loses_nothing_unless_the_new_one_fanned_out_first(
    relay: _Relay, controller: _Controller
) -> None:
    """After a goodbye, a fresh controller that fanned out nothing yet owes no resync."""
    reconnects = relay.link.reconnects
    await controller.stop(graceful=True)
    # Tries that find nobody listening (the successor is still starting) lose nothing either.
    await until(lambda: relay.link.reconnects >= reconnects + 3)
    await controller.start()
    await until(lambda: len(relay.ups) == 2)
    assert relay.ups[-1] == (_address(controller), False)
    # Again, but this time the new controller fans out before the relay is back.
    await controller.stop(graceful=True)
    await until(lambda: relay.link.state(_address(controller)) is StreamState.DOWN)
    persisted = chat_pb2.PersistedMessage(message=chat_message(T1, msg_id="m1"), seq=1)
    controller.hub.publish([Routed.to_channel(T1, chat_pb2.Delivery(message=persisted))])
    await controller.start()
    await until(lambda: len(relay.ups) == 3)
    assert relay.ups[-1] == (_address(controller), True)


async def test_a_crash_reports_the_loss(relay: _Relay, controller: _Controller) -> None:
    """A controller that vanishes without goodbye makes the link report a loss when back."""
    await controller.stop(graceful=False)
    await until(lambda: relay.link.state(_address(controller)) is StreamState.DOWN)
    ticket = relay.link.ticket()
    assert ticket == {}
    assert await relay.link.wait(ticket, 5) == frozenset({_address(controller)})
    await controller.start()
    await until(lambda: len(relay.ups) == 2)
    assert relay.ups[-1] == (_address(controller), True)


async def test_deliveries_reach_the_relay_in_order(relay: _Relay, controller: _Controller) -> None:
    """What the controller publishes for a subscribed channel arrives, in order."""
    for seq in (1, 2, 3):
        persisted = chat_pb2.PersistedMessage(message=chat_message(T1, msg_id=f"m{seq}"), seq=seq)
        controller.hub.publish([Routed.to_channel(T1, chat_pb2.Delivery(message=persisted))])
    await until(lambda: sum(len(b.deliveries) for b in relay.batches) == 3)
    seqs = [d.message.seq for b in relay.batches for d in b.deliveries]
    assert seqs == [1, 2, 3]


async def test_each_outage_starts_again_from_the_first_backoff(controller: _Controller) -> None:
    """The reconnect backoff grows within an outage and starts over once the stream was UP."""
    delays: list[float] = []

    async def recorded(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0.01)  # the test's pace, not the backoff's

    async def outage() -> list[float]:
        """The first five reconnect delays of one controller outage."""
        await until(lambda: link.all_up)
        done = len(delays)
        await controller.stop(graceful=False)
        await until(lambda: len(delays) >= done + 5)
        await controller.start()
        return delays[done : done + 5]

    link = ControllerLink(
        [_address(controller)],
        "relay-backoff",
        lambda _b: None,
        lambda: [T1],
        token=TOKEN,
        max_backoff_s=5.0,
        sleep=recorded,
    )
    link.start()
    try:
        for grown in (await outage(), await outage()):
            # 0.1 s doubled per failed try, each with +-50 % jitter.
            assert grown[0] <= FIRST_BACKOFF_S * 1.5
            assert grown[4] >= FIRST_BACKOFF_S * 16 * 0.5
    finally:
        await link.stop()


async def test_a_lost_controller_is_tried_at_the_links_pace() -> None:
    """Connection attempts follow the link's backoff, not gRPC's own (1 s growing to 120 s)."""
    knocks = 0

    async def refuse(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal knocks
        knocks += 1
        writer.close()  # no HTTP/2: the channel fails to connect, as to a controller not back yet

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = ControllerLink(
        [f"127.0.0.1:{port}"],
        "relay-knock",
        lambda _b: None,
        lambda: [T1],
        token=TOKEN,
        max_backoff_s=0.2,
    )
    link.start()
    try:
        # gRPC's own backoff would allow about 4 attempts in these 5 s; the link's, about 25.
        await until(lambda: knocks >= 12, timeout_s=5.0)
    finally:
        await link.stop()
        server.close()
        await server.wait_closed()


def _started_link(addresses: list[str]) -> tuple[ControllerLink, list[str]]:
    """A started link holding T1, and the addresses of the streams it reports lost."""
    lost: list[str] = []
    link = ControllerLink(
        addresses,
        "relay-losses",
        lambda _b: None,
        lambda: [T1],
        token=TOKEN,
        on_stream_lost=lost.append,
        max_backoff_s=0.2,
    )
    link.start()
    return link, lost


class _Blackhole:
    """A TCP proxy to the controller that can stop passing bytes either way without closing
    anything: what a relay sees of a controller whose host lost power or was cut off."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if not self.frozen:
                sink.write(data)
                await sink.drain()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_a_controller_that_vanishes_without_a_reset_is_seen_lost_within_seconds(
    controller: _Controller,
) -> None:
    """Keepalive pings end a stream whose controller stopped answering (no TCP reset), within
    about 3 s: before the controller's partitions move, so the relay can tell its sockets."""
    proxy = _Blackhole(controller.port)
    await proxy.start()
    link, lost = _started_link([f"127.0.0.1:{proxy.port}"])
    try:
        await until(lambda: link.all_up)
        await asyncio.sleep(2)  # pings answered through the proxy keep a quiet stream UP
        assert link.all_up
        assert lost == []
        proxy.frozen = True
        started = asyncio.get_running_loop().time()
        await until(lambda: lost != [], timeout_s=10)
        assert asyncio.get_running_loop().time() - started < 4.5
        assert lost == [f"127.0.0.1:{proxy.port}"]
    finally:
        await link.stop()
        await proxy.close()


async def test_removing_a_controller_that_streamed_without_goodbye_is_a_loss(
    controller: _Controller,
) -> None:
    """A controller dropped by discovery while its stream was UP (it went silent, no goodbye)
    counts as a loss; one dropped after its goodbye does not."""
    other = _Controller(free_port())
    await other.start()
    link, lost = _started_link([_address(controller), _address(other)])
    try:
        await until(lambda: link.all_up)
        assert await link.remove(_address(other))
        assert lost == [_address(other)]
        await other.start()  # a new one at the same address, which then stops gracefully
        link.add(_address(other))
        await until(lambda: link.all_up)
        await other.stop(graceful=True)
        await until(lambda: link.state(_address(other)) is StreamState.DOWN)
        assert await link.remove(_address(other))
        assert lost == [_address(other)]
    finally:
        await link.stop()
        await other.stop(graceful=False)
