"""Kafka records as the controller sees them, and decoding them into what the batch acts on.

Pure: no I/O. A record either decodes into a message, a change to a message, a read marker, a typing
signal or a membership event, or it becomes a dead letter with the reason; the partition never
stalls on a record it cannot read. On ``chat.messages.v1`` the ``kind`` header says what a value is
(none: a message, as every record before kinds existed); a kind this controller does not know is
dead-lettered, not guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatcore.errors import InvalidInput
from chatcore.kafka import EVENTS_TOPIC, MESSAGES_TOPIC, SIGNALS_TOPIC
from chatcore.messages import (
    CORRELATION_HEADER,
    KIND_CHANGE,
    KIND_HEADER,
    KIND_MESSAGE,
    KIND_READ,
    decode_record,
)
from chatcore.proto.chat.v1 import chat_pb2

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, detached from the client library's type."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @classmethod
    def from_kafka(cls, record: Any) -> Record:
        """From an aiokafka ``ConsumerRecord`` (untyped upstream)."""
        return cls(
            topic=str(record.topic),
            partition=int(record.partition),
            offset=int(record.offset),
            key=record.key,
            value=record.value,
            headers=tuple((str(k), bytes(v or b"")) for k, v in (record.headers or ())),
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")[:64]
        return None

    @property
    def correlation_id(self) -> str:
        """The correlation id the producer stamped (empty when none), for log lines."""
        return self.header(CORRELATION_HEADER) or ""


@dataclass(frozen=True, slots=True)
class MessageItem:
    """A chat message to persist; its offset becomes ``seq``."""

    record: Record
    message: chat_pb2.ChatMessage


@dataclass(frozen=True, slots=True)
class ChangeItem:
    """An edit, delete or reaction of a stored message; its offset is the change's seq."""

    record: Record
    change: chat_pb2.MessageChange


@dataclass(frozen=True, slots=True)
class ReadItem:
    """A member's read position moving forward (or set when they joined)."""

    record: Record
    marker: chat_pb2.ReadMarker


@dataclass(frozen=True, slots=True)
class SignalItem:
    """A typing signal: fanned out to the channel's subscribers, never stored."""

    record: Record
    signal: chat_pb2.Signal


@dataclass(frozen=True, slots=True)
class EventItem:
    """A membership change: fanned out to every relay stream."""

    record: Record
    event: chat_pb2.MembershipEvent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be processed, with the reason sent along in its ``error`` header."""

    record: Record
    error: str


Item = MessageItem | ChangeItem | ReadItem | SignalItem | EventItem

_REACTIONS = (chat_pb2.CHANGE_KIND_REACTION_ADD, chat_pb2.CHANGE_KIND_REACTION_REMOVE)


def _parse_signal(value: bytes) -> chat_pb2.Signal:
    signal = chat_pb2.Signal()
    try:
        signal.ParseFromString(value)
    except Exception as exc:  # protobuf raises DecodeError, but also others on garbage
        raise InvalidInput(f"not a Signal record: {type(exc).__name__}") from exc
    # Random bytes often parse as some message: the required fields tell a real record apart.
    if signal.kind != chat_pb2.SIGNAL_KIND_TYPING or not signal.channel_id or not signal.sender:
        raise InvalidInput("Signal record lacks kind, channel_id or sender")
    return signal


def _parse_event(value: bytes) -> chat_pb2.MembershipEvent:
    event = chat_pb2.MembershipEvent()
    try:
        event.ParseFromString(value)
    except Exception as exc:
        raise InvalidInput(f"not a MembershipEvent record: {type(exc).__name__}") from exc
    if event.change == chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED:
        # User-wide: no channel, but the user is the whole point.
        if not event.user_id or event.channel_id:
            raise InvalidInput("a user_disabled event names a user_id and no channel_id")
        return event
    if event.change == chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED:
        if not event.user_id or not event.session_id or event.channel_id:
            raise InvalidInput(
                "a session_ended event names a user_id and a session_id and no channel_id"
            )
        return event
    if event.change == chat_pb2.MEMBERSHIP_CHANGE_PROFILE and not (
        event.user_id and event.user_name
    ):
        raise InvalidInput("a profile event names a user_id and their user_name")
    if not event.channel_id or event.change == chat_pb2.MEMBERSHIP_CHANGE_UNSPECIFIED:
        raise InvalidInput("MembershipEvent record lacks channel_id or change")
    return event


def _parse_message(record: Record, value: bytes) -> chat_pb2.ChatMessage:
    message = decode_record(value)
    # seq is an offset in the channel's partition: a record keyed otherwise sits in some other
    # partition, and its offset would break the channel's order (or clash with another seq).
    if record.key != message.channel_id.encode():
        raise InvalidInput("ChatMessage record is not keyed by its channel_id")
    return message


def _keyed_by(record: Record, channel_id: str, what: str) -> None:
    if record.key != channel_id.encode():
        raise InvalidInput(f"{what} record is not keyed by its channel_id")


def _parse_change(record: Record, value: bytes) -> chat_pb2.MessageChange:
    change = chat_pb2.MessageChange()
    try:
        change.ParseFromString(value)
    except Exception as exc:
        raise InvalidInput(f"not a MessageChange record: {type(exc).__name__}") from exc
    if not change.channel_id or not change.message_id or not change.actor:
        raise InvalidInput("MessageChange record lacks channel_id, message_id or actor")
    if change.kind not in chat_pb2.ChangeKind.values() or not change.kind:
        raise InvalidInput(f"MessageChange record has unknown kind {change.kind}")
    if change.kind in _REACTIONS and not change.emoji:
        raise InvalidInput("a reaction change names no emoji")
    _keyed_by(record, change.channel_id, "MessageChange")
    return change


def _parse_read(record: Record, value: bytes) -> chat_pb2.ReadMarker:
    marker = chat_pb2.ReadMarker()
    try:
        marker.ParseFromString(value)
    except Exception as exc:
        raise InvalidInput(f"not a ReadMarker record: {type(exc).__name__}") from exc
    if not marker.channel_id or not marker.user_id or marker.seq < 0 or marker.count < 0:
        raise InvalidInput("ReadMarker record lacks channel_id or user_id, or has a negative seq")
    _keyed_by(record, marker.channel_id, "ReadMarker")
    return marker


def _decode_messages_topic(record: Record, value: bytes) -> Item:
    kind = record.header(KIND_HEADER)
    if kind is None or kind == KIND_MESSAGE:
        return MessageItem(record, _parse_message(record, value))
    if kind == KIND_CHANGE:
        return ChangeItem(record, _parse_change(record, value))
    if kind == KIND_READ:
        return ReadItem(record, _parse_read(record, value))
    raise InvalidInput(f"unknown record kind {kind!r}")


def decode(record: Record) -> Item | DeadLetter:
    """What a record means to the controller, or why it goes to the dead-letter topic."""
    value = record.value or b""
    try:
        if record.topic == MESSAGES_TOPIC:
            return _decode_messages_topic(record, value)
        if record.topic == SIGNALS_TOPIC:
            return SignalItem(record, _parse_signal(value))
        if record.topic == EVENTS_TOPIC:
            return EventItem(record, _parse_event(value))
    except InvalidInput as exc:
        return DeadLetter(record, exc.message)
    return DeadLetter(record, f"unexpected topic {record.topic}")
