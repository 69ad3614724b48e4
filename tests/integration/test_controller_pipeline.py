"""The controller against the real Kafka and FerretDB: persist, fan out, commit, dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from grpc import aio

from chatcore.kafka import (
    EVENTS_TOPIC,
    MESSAGES_DLQ_TOPIC,
    MESSAGES_TOPIC,
    SIGNALS_TOPIC,
    make_producer,
)
from chatcore.mongo import Document, database, make_mongo_client
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.controller.server import RunningController, start
from tests.internal_grpc import authed_stub


def _controller_settings(settings: Settings, *, group: str, db: str) -> Settings:
    return dataclasses.replace(
        settings,
        mongo_db=db,
        controller_group_id=group,
        controller_offset_reset="latest",
        drain_timeout_s=5.0,
    )


@pytest.fixture(scope="module")
def db_name() -> str:
    """A database of this module's own."""
    return f"chat_test_ctrl_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def mongo_docs(settings: Settings, db_name: str) -> AsyncIterator[Callable[..., object]]:
    """Reads the module database's ``messages``; drops the database at the end."""
    client = make_mongo_client(settings)
    db = database(client, dataclasses.replace(settings, mongo_db=db_name))

    async def find(channel_id: str) -> list[Document]:
        cursor = db.messages.find({"channel_id": channel_id}, {"_id": 0}).sort("seq", 1)
        return await cursor.to_list(length=None)

    yield find
    await client.drop_database(db_name)
    await client.close()


async def _find(mongo_docs: Callable[..., object], channel_id: str) -> list[Document]:
    result = mongo_docs(channel_id)
    assert asyncio.iscoroutine(result)
    docs: list[Document] = await result
    return docs


@pytest.fixture(scope="module")
async def controller(settings: Settings, db_name: str) -> AsyncIterator[RunningController]:
    """A controller in its own consumer group, started on free ports, ready to consume."""
    running = await start(
        _controller_settings(settings, group=f"test-ctrl-{uuid.uuid4().hex}", db=db_name),
        grpc_port=0,
        http_port=0,
    )
    await running.wait_ready()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A producer like the relay's (idempotent, acks=all)."""
    kafka = make_producer(settings, client_id="test-controller-producer")
    await kafka.start()
    yield kafka
    await kafka.stop()


class Relay:
    """A Subscribe stream as a relay holds it, collecting every delivery it receives."""

    def __init__(self, controller: RunningController, relay_id: str, token: str) -> None:
        self.controller = controller
        self.relay_id = relay_id
        self.channel = aio.insecure_channel(f"127.0.0.1:{controller.grpc_port}")
        self.call = authed_stub(self.channel, token).Subscribe()
        self.deliveries: list[chat_pb2.Delivery] = []
        self.confirmed = 0
        self._reader: asyncio.Task[None] | None = None

    async def open(self, channels: Sequence[str]) -> None:
        await self.call.write(
            chat_pb2.SubscribeRequest(relay_id=self.relay_id, add=channels, request_id=1)
        )
        self._reader = asyncio.create_task(self._read())
        # Confirmed: the channels are in force for the controller's fan-out from here on.
        await until(lambda: self.confirmed >= 1)

    async def _read(self) -> None:
        while True:
            batch = await self.call.read()
            if not isinstance(batch, chat_pb2.DeliveryBatch):
                return
            self.deliveries.extend(batch.deliveries)
            self.confirmed = max(self.confirmed, batch.confirmed)

    def messages(self, channel_id: str) -> list[chat_pb2.PersistedMessage]:
        return [
            d.message
            for d in self.deliveries
            if d.HasField("message") and d.message.message.channel_id == channel_id
        ]

    def memberships(self, channel_id: str) -> list[chat_pb2.MembershipEvent]:
        return [
            d.membership
            for d in self.deliveries
            if d.HasField("membership") and d.membership.channel_id == channel_id
        ]

    async def close(self) -> None:
        self.call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, aio.AioRpcError):
                await self._reader
        await self.channel.close()


async def open_streams(controller: RunningController) -> int:
    """The controller's open stream count, read from its /metrics like an operator would."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{controller.port}/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("controller_open_streams "):
            return int(float(line.split()[1]))
    return 0


async def until(
    condition: Callable[[], object],
    *,
    timeout_s: float = 15.0,
    streams: tuple[RunningController, int] | None = None,
) -> None:
    """Poll ``condition`` (or a stream count) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if streams is not None:
            if await open_streams(streams[0]) >= streams[1]:
                return
        elif condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def relay(
    controller: RunningController, channels: Sequence[str], token: str
) -> AsyncIterator[Relay]:
    """An open relay stream subscribed to ``channels``, authenticated with ``token``."""
    stream = Relay(controller, f"test-relay-{uuid.uuid4().hex[:8]}", token)
    try:
        await stream.open(channels)
        yield stream
    finally:
        open_before = await open_streams(controller)
        await stream.close()
        # The controller unregisters a cancelled stream asynchronously; wait for it, or the next
        # stream's registration could be hidden by this one's departure in the stream count.
        deadline = asyncio.get_running_loop().time() + 10
        while (
            await open_streams(controller) >= open_before
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.02)


def _message(channel_id: str, n: int, *, msg_id: str | None = None) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(
        id=msg_id or uuid.uuid4().hex,
        channel_id=channel_id,
        to="*",
        type=chat_pb2.MESSAGE_TYPE_TEXT,
        data=f"message {n}",
        sender="user-1",
        ts_ms=1_780_000_000_000 + n,
        relay_id="test",
    )


async def _produce_meta(producer: AIOKafkaProducer, message: chat_pb2.ChatMessage) -> Any:
    return await producer.send_and_wait(
        MESSAGES_TOPIC,
        message.SerializeToString(),
        key=message.channel_id.encode(),
        headers=[("correlation_id", b"test-corr")],
    )


async def _produce(producer: AIOKafkaProducer, message: chat_pb2.ChatMessage) -> int:
    return int((await _produce_meta(producer, message)).offset)


async def test_messages_reach_subscribers_once_in_order_and_are_stored_once(
    controller: RunningController,
    producer: AIOKafkaProducer,
    mongo_docs: Callable[..., object],
    settings: Settings,
) -> None:
    """Subscribed streams get each message once, in order, seq = offset; others get none."""
    channel = uuid.uuid4().hex
    async with (
        relay(controller, [channel], settings.internal_token) as subscribed,
        relay(controller, [uuid.uuid4().hex], settings.internal_token) as other,
    ):
        sent = [_message(channel, n) for n in range(25)]
        offsets = [await _produce(producer, m) for m in sent]
        # A marker behind them in the partition: once it is in, any duplicate would be too.
        marker = _message(channel, 25)
        marker_offset = await _produce(producer, marker)
        await until(lambda: marker.id in {p.message.id for p in subscribed.messages(channel)})
        got = subscribed.messages(channel)[:-1]
        assert subscribed.messages(channel)[-1].message.id == marker.id
        assert [p.message.id for p in got] == [m.id for m in sent]
        assert [p.seq for p in got] == offsets
        assert offsets == sorted(offsets)
        assert got[0].message == sent[0]
        assert other.messages(channel) == []
    docs = await _find(mongo_docs, channel)
    assert [(d["id"], d["seq"]) for d in docs] == list(
        zip([m.id for m in [*sent, marker]], [*offsets, marker_offset], strict=True)
    )


async def test_client_retry_duplicate_is_stored_and_delivered_once(
    controller: RunningController,
    producer: AIOKafkaProducer,
    mongo_docs: Callable[..., object],
    settings: Settings,
) -> None:
    """The same message id produced twice (a client retry) is stored and delivered once."""
    channel = uuid.uuid4().hex
    async with relay(controller, [channel], settings.internal_token) as stream:
        first = _message(channel, 1)
        first_offset = await _produce(producer, first)
        await _produce(producer, first)
        marker = _message(channel, 2)
        marker_offset = await _produce(producer, marker)
        await until(lambda: any(p.message.id == marker.id for p in stream.messages(channel)))
        assert [(p.message.id, p.seq) for p in stream.messages(channel)] == [
            (first.id, first_offset),
            (marker.id, marker_offset),
        ]
    docs = await _find(mongo_docs, channel)
    assert [(d["id"], d["seq"]) for d in docs] == [
        (first.id, first_offset),
        (marker.id, marker_offset),
    ]


async def _dlq_end(settings: Settings) -> tuple[AIOKafkaConsumer, TopicPartition, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    tp = TopicPartition(MESSAGES_DLQ_TOPIC, 0)
    reader.assign([tp])
    end = (await reader.end_offsets([tp]))[tp]
    reader.seek(tp, end)
    return reader, tp, end


async def test_poison_record_goes_to_the_dlq_and_the_partition_moves_on(
    controller: RunningController, producer: AIOKafkaProducer, settings: Settings
) -> None:
    """An undecodable record lands in the DLQ with an error header; later messages still flow."""
    channel = uuid.uuid4().hex
    poison = f"not protobuf {uuid.uuid4().hex}".encode() + b"\xff\xfe"
    reader, tp, _end = await _dlq_end(settings)
    try:
        async with relay(controller, [channel], settings.internal_token) as stream:
            meta = await producer.send_and_wait(
                MESSAGES_TOPIC, poison, key=channel.encode(), headers=[("correlation_id", b"x1")]
            )
            after = _message(channel, 1)
            offset = await _produce(producer, after)
            await until(lambda: bool(stream.messages(channel)))
            assert [(p.message.id, p.seq) for p in stream.messages(channel)] == [(after.id, offset)]
        found = None
        deadline = asyncio.get_running_loop().time() + 15
        while found is None and asyncio.get_running_loop().time() < deadline:
            batch = await reader.getmany(tp, timeout_ms=500)
            found = next((r for r in batch.get(tp, []) if r.value == poison), None)
        assert found is not None, "poison record not in the DLQ"
        headers = dict(found.headers)
        assert found.key == channel.encode()
        assert headers["correlation_id"] == b"x1"
        assert headers["error"]
        assert headers["source"] == f"{MESSAGES_TOPIC}/{meta.partition}/{meta.offset}".encode()
    finally:
        await reader.stop()


async def test_membership_events_reach_every_stream_and_signals_their_channel(
    controller: RunningController, producer: AIOKafkaProducer, settings: Settings
) -> None:
    """Membership events go to all streams; typing signals only to the channel's subscribers."""
    channel = uuid.uuid4().hex
    async with (
        relay(controller, [channel], settings.internal_token) as member,
        relay(controller, [uuid.uuid4().hex], settings.internal_token) as unrelated,
    ):
        event = chat_pb2.MembershipEvent(
            channel_id=channel,
            user_id="user-2",
            change=chat_pb2.MEMBERSHIP_CHANGE_REMOVED,
            ts_ms=1,
            actor="user-1",
        )
        await producer.send_and_wait(EVENTS_TOPIC, event.SerializeToString(), key=channel.encode())
        signal = chat_pb2.Signal(
            kind=chat_pb2.SIGNAL_KIND_TYPING, channel_id=channel, to="*", sender="user-1", ts_ms=2
        )
        await producer.send_and_wait(
            SIGNALS_TOPIC, signal.SerializeToString(), key=channel.encode()
        )
        await until(lambda: bool(member.memberships(channel) and unrelated.memberships(channel)))
        assert member.memberships(channel) == [event] == unrelated.memberships(channel)
        await until(lambda: any(d.HasField("signal") for d in member.deliveries))
        assert [d.signal for d in member.deliveries if d.HasField("signal")] == [signal]
        assert not any(
            d.HasField("signal") and d.signal.channel_id == channel for d in unrelated.deliveries
        )


async def _redelivered(controller: RunningController) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{controller.port}/metrics") as response,
    ):
        text = await response.text()
    prefix = 'controller_messages_total{outcome="redelivered"} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def test_restart_resumes_after_committed_offsets_and_redelivers_uncommitted(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    """A successor skips committed records; rewound ones are redelivered, not stored again."""
    # The rewind stands in for a crash between the database write and the commit: the records
    # are consumed again, found stored at the same seq, and classified as redeliveries.
    group = f"test-ctrl-restart-{uuid.uuid4().hex}"
    db_name = f"chat_test_ctrl_{uuid.uuid4().hex[:12]}"
    channel = uuid.uuid4().hex
    ctrl_settings = _controller_settings(settings, group=group, db=db_name)
    client = make_mongo_client(settings)
    try:
        first = await start(ctrl_settings, grpc_port=0, http_port=0)
        try:
            await first.wait_ready()
            async with relay(first, [channel], settings.internal_token) as stream:
                sent = [_message(channel, n) for n in range(5)]
                metas = [await _produce_meta(producer, m) for m in sent]
                await until(lambda: len(stream.messages(channel)) == 5)
        finally:
            await first.stop()
        offsets = [m.offset for m in metas]

        second = await start(ctrl_settings, grpc_port=0, http_port=0)
        try:
            await second.wait_ready()
            async with relay(second, [channel], settings.internal_token) as stream:
                late = _message(channel, 5)
                late_offset = await _produce(producer, late)
                # A marker behind it: once it is in, anything consumed again would be too.
                marker = _message(channel, 6)
                marker_offset = await _produce(producer, marker)
                await until(lambda: marker.id in {p.message.id for p in stream.messages(channel)})
                # Nothing the first controller committed comes again.
                assert [(p.message.id, p.seq) for p in stream.messages(channel)] == [
                    (late.id, late_offset),
                    (marker.id, marker_offset),
                ]
        finally:
            await second.stop()

        # Move the group's committed offset back to the third message: the last commits "lost".
        tp = TopicPartition(MESSAGES_TOPIC, metas[0].partition)
        rewinder = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await rewinder.start()
        try:
            rewinder.assign([tp])
            await rewinder.commit({tp: offsets[2]})
        finally:
            await rewinder.stop()

        third = await start(ctrl_settings, grpc_port=0, http_port=0)
        try:
            await third.wait_ready()
            # Messages 3, 4, 5, the late one and its marker are consumed again: all found
            # stored in place.
            await until_async(lambda: _redelivered(third), 5.0)
        finally:
            await third.stop()

        db = database(client, ctrl_settings)
        docs = await db.messages.find({"channel_id": channel}).sort("seq", 1).to_list(length=None)
        assert [(d["id"], d["seq"]) for d in docs] == list(
            zip(
                [m.id for m in [*sent, late, marker]],
                [*offsets, late_offset, marker_offset],
                strict=True,
            )
        )
    finally:
        await client.drop_database(db_name)
        await client.close()


async def until_async(read: Callable[[], Awaitable[float]], expected: float) -> None:
    """Poll an async reading until it equals ``expected``."""
    value = None
    for _ in range(300):
        value = await read()
        if value == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected}, last read {value}")
