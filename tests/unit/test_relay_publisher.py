"""The relay's publisher with an in-memory producer: acks after the broker, retries, reuse."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from chatcore.errors import Unavailable
from chatcore.kafka import MESSAGES_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.frames import ChatFrame
from services.relay.metrics import RelayMetrics
from services.relay.publisher import Publisher

TEAM, USER = "t" * 32, "u" * 32


@dataclass
class _Metadata:
    offset: int


class _Producer:
    """Records are 'in the buffer' at once; the test decides when the broker acks or fails."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, chat_pb2.ChatMessage, bytes | None]] = []
        self.pending: list[asyncio.Future[Any]] = []
        self.refuse = False

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        if self.refuse:
            raise RuntimeError("producer closed")
        record = chat_pb2.ChatMessage()
        record.ParseFromString(value)
        self.sent.append((topic, record, key))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def ack(self, index: int, offset: int) -> None:
        self.pending[index].set_result(_Metadata(offset))

    def fail(self, index: int) -> None:
        self.pending[index].set_exception(RuntimeError("broker said no"))


def _frame(data: str = "hello", cmid: str = "c1") -> ChatFrame:
    return ChatFrame(channel_id=TEAM, to="*", type="text", data=data, client_msg_id=cmid)


@pytest.fixture
def producer() -> _Producer:
    """A fresh in-memory producer."""
    return _Producer()


@pytest.fixture
def publisher(producer: _Producer) -> Publisher:
    """A publisher over it, clock fixed at t=1000 s."""
    metrics = RelayMetrics.create(CollectorRegistry())
    return Publisher(producer, relay_id="r1", metrics=metrics, clock=lambda: 1000.0)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_ack_only_after_the_broker_acknowledged(
    publisher: Publisher, producer: _Producer
) -> None:
    """The sender hears nothing until Kafka acks; then one ack carrying the offset as seq."""
    replies: list[bytes] = []
    await publisher.publish(USER, _frame(), replies.append)
    topic, record, key = producer.sent[0]
    assert (topic, key, record.sender, record.channel_id) == (
        MESSAGES_TOPIC,
        TEAM.encode(),
        USER,
        TEAM,
    )
    await _settle()
    assert replies == []
    producer.ack(0, 41)
    await _settle()
    ack = json.loads(replies[0])
    assert (ack["type"], ack["seq"], ack["id"], ack["client_msg_id"]) == (
        "ack",
        41,
        record.id,
        "c1",
    )
    assert len(replies) == 1


async def test_a_failed_produce_answers_an_error_and_no_ack(
    publisher: Publisher, producer: _Producer
) -> None:
    """The broker refusing the record yields exactly one 'unavailable' error frame."""
    replies: list[bytes] = []
    await publisher.publish(USER, _frame(), replies.append)
    producer.fail(0)
    await _settle()
    assert [json.loads(r)["code"] for r in replies] == ["unavailable"]


async def test_a_producer_that_cannot_take_the_record_raises_unavailable(
    publisher: Publisher, producer: _Producer
) -> None:
    """When the record cannot even be buffered, the caller gets Unavailable at once."""
    producer.refuse = True
    with pytest.raises(Unavailable):
        await publisher.publish(USER, _frame(), lambda _t: None)


async def test_a_retry_is_answered_with_the_first_ack_without_producing_again(
    publisher: Publisher, producer: _Producer
) -> None:
    """The same client_msg_id and content again: the first answer, one record in Kafka."""
    first: list[bytes] = []
    retry: list[bytes] = []
    await publisher.publish(USER, _frame(), first.append)
    await publisher.publish(USER, _frame(), retry.append)
    assert len(producer.sent) == 1
    producer.ack(0, 7)
    await _settle()
    assert first == retry
    assert json.loads(retry[0])["seq"] == 7


async def test_reusing_a_client_msg_id_for_other_content_is_a_new_message(
    publisher: Publisher, producer: _Producer
) -> None:
    """A reused client_msg_id with other data is produced as its own message with its own id."""
    first: list[bytes] = []
    second: list[bytes] = []
    await publisher.publish(USER, _frame("hello"), first.append)
    await publisher.publish(USER, _frame("something else"), second.append)
    assert len(producer.sent) == 2
    assert producer.sent[0][1].id != producer.sent[1][1].id
    producer.ack(0, 1)
    producer.ack(1, 2)
    await _settle()
    assert json.loads(first[0])["id"] == producer.sent[0][1].id
    assert json.loads(second[0])["id"] == producer.sent[1][1].id


async def test_a_retry_after_a_failure_is_produced_again(
    publisher: Publisher, producer: _Producer
) -> None:
    """A failed first attempt does not poison the retry: it is produced and acked."""
    replies: list[bytes] = []
    await publisher.publish(USER, _frame(), replies.append)
    producer.fail(0)
    await _settle()
    await publisher.publish(USER, _frame(), replies.append)
    producer.ack(1, 9)
    await _settle()
    assert [json.loads(r)["type"] for r in replies] == ["error", "ack"]
