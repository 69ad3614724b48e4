"""The one message codec: record -> document -> client object, and the history view agrees."""

from __future__ import annotations

import pytest

from chatcore.errors import InvalidInput
from chatcore.messages import (
    RELAY_ID_RE,
    automatic_relay_id,
    client_object,
    decode_record,
    from_document,
    iso_ms,
    to_document,
)
from chatcore.proto.chat.v1 import chat_pb2
from services.management.history_store import message_from_doc


def _record() -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(
        id="01ABC",
        channel_id="t" * 32,
        to="*",
        type=chat_pb2.MESSAGE_TYPE_TEXT,
        data="héllo <b>",
        sender="u" * 32,
        ts_ms=1_764_000_000_123,
        client_msg_id="c1",
    )


def test_round_trip_through_the_stored_document() -> None:
    """A record stored and read back is the same message with its seq."""
    persisted = from_document(to_document(_record(), 42, "t1/0"))
    assert persisted.message == _record()
    assert persisted.seq == 42


def test_timestamps_keep_exact_milliseconds() -> None:
    """Milliseconds survive conversion exactly (no float rounding)."""
    assert iso_ms(1_764_000_000_123) == "2025-11-24T16:00:00.123Z"
    assert iso_ms(1_764_000_000_999) == "2025-11-24T16:00:00.999Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


def test_history_view_matches_the_live_delivery() -> None:
    """The history endpoint and the WebSocket render a stored message identically."""
    doc = to_document(_record(), 7, "t1/0")
    assert message_from_doc(doc).public() == client_object(from_document(doc))


@pytest.mark.parametrize(
    "value",
    [b"\xff\x00garbage", b"", chat_pb2.ChatMessage(id="x").SerializeToString()],
)
def test_undecodable_records_are_invalid_input(value: bytes) -> None:
    """Garbage, empty or incomplete records are InvalidInput: dead-letter, never retry."""
    with pytest.raises(InvalidInput):
        decode_record(value)


def test_automatic_relay_id_keeps_the_port_within_the_controllers_rule() -> None:
    """A 63-character pod name still gives an id the controller accepts, ending in the port."""
    pod = "chat-relay-" + "a" * 52
    relay_id = automatic_relay_id(pod, 43210)
    assert RELAY_ID_RE.fullmatch(relay_id)
    assert relay_id.endswith("-43210")
    assert relay_id.startswith("chat-relay-a")
    assert automatic_relay_id("vm 1/eu", 8103) == "vm_1_eu-8103"
    assert automatic_relay_id("", 8103) == "relay-8103"
