"""In-memory stand-ins for the relay's tests: what the gate asks the controllers
(``gate.Authority``) and the hub's writer (``hub.Fanout``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier, StaticJwksSource
from services.relay.connection import Relay
from services.relay.hub import Session


class FakeAuthority:
    """Member lists, attachment checks and stored messages from dicts; subclasses slow or count
    the calls they care about."""

    def __init__(
        self,
        members: dict[str, list[str]] | None = None,
        messages: dict[tuple[str, str], chat_pb2.GetMessageReply] | None = None,
    ) -> None:
        self.members_of = members or {}
        self.messages = messages or {}

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        users = self.members_of.get(channel_id)
        if users is None:
            return chat_pb2.GetMembersReply(found=False)
        return chat_pb2.GetMembersReply(user_ids=users, active=True, found=True)

    async def check_attachment(
        self,
        attachment_id: str,
        channel_id: str,
        kind: chat_pb2.MessageType.ValueType,
        sender: str,
    ) -> chat_pb2.CheckAttachmentReply:
        return chat_pb2.CheckAttachmentReply(ok=True)

    async def message(self, channel_id: str, message_id: str) -> chat_pb2.GetMessageReply:
        return self.messages.get((channel_id, message_id), chat_pb2.GetMessageReply(found=False))


class RecordingFanout:
    """A Fanout that records which session got which frame once flushed, and counts renders."""

    def __init__(self) -> None:
        self.sent: list[tuple[Session, dict[str, object]]] = []
        self.queued: list[tuple[Session, dict[str, object]]] = []
        self.renders = 0

    def queue(self, targets: Iterable[Session], text: bytes) -> None:
        self.renders += 1
        frame = json.loads(text)
        self.queued.extend((s, frame) for s in targets)

    def queue_series(
        self, texts: Sequence[bytes], targets: Iterable[tuple[Session, Sequence[int] | None]]
    ) -> None:
        frames = [json.loads(t) for t in texts]
        self.renders += len(frames)
        for s, picked in targets:
            chosen = range(len(frames)) if picked is None else picked
            self.queued.extend((s, frames[i]) for i in chosen)

    def flush(self) -> None:
        self.sent.extend(self.queued)
        self.queued.clear()

    def got(self, session: Session) -> list[dict[str, object]]:
        return [f for s, f in self.sent if s is session]


class NoProducer:
    """A relay producer for tests in which nothing may be produced."""

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        raise AssertionError("nothing is produced in this test")


def offline_relay(settings: Settings, relay_id: str) -> Relay:
    """A relay built as the server builds one, over controllers it never reaches (its link is not
    started), with no keys and a producer that must not be used: for its callbacks alone."""
    return Relay(
        settings,
        relay_id=relay_id,
        verifier=JwtVerifier.from_settings(settings, StaticJwksSource({"keys": []})),
        producer=NoProducer(),
        registry=CollectorRegistry(),
    )
