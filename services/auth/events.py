"""The auth service's events on ``chat.events.v1``: ``user_disabled``, ``session_ended`` and
``profile``.

Value: a serialized ``chat.v1.MembershipEvent`` with ``change = USER_DISABLED`` (or
``SESSION_ENDED`` with ``session_id`` set), ``channel_id`` empty and ``user_id`` set; key: the user
id (all of one user's events in one partition, in order). ``profile`` (a rename) is a team's
news: one ``MEMBERSHIP_CHANGE_PROFILE`` event per team of the user, keyed by the team.

The operator command is short-lived, so each of its attempts uses a fresh producer: a producer
whose start failed is not reused. The auth service sends ``session_ended`` and ``profile`` with
one producer, started at the first logout or rename (so the service starts, and logins work,
while Kafka is away) and replaced after a failure. Either may publish an event twice after a lost
ack, which consumers tolerate (closing the same sockets again, or telling the same name again,
changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chatcore.errors import Unavailable
from chatcore.kafka import EVENTS_TOPIC
from chatcore.logging import get_logger, new_request_id
from chatcore.proto.chat.v1 import chat_pb2

_log = get_logger("auth.events")

_FIRST_RETRY_S = 0.5
_MAX_RETRY_S = 5.0


class EventProducer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object: ...


def encode_user_disabled(user_id: str, *, actor: str, ts_ms: int) -> bytes:
    """The record value: a ``MembershipEvent`` for the whole user, no channel."""
    event = chat_pb2.MembershipEvent(
        channel_id="",
        user_id=user_id,
        change=chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED,
        ts_ms=ts_ms,
        actor=actor,
    )
    return event.SerializeToString()


def encode_session_ended(user_id: str, session_id: str, *, ts_ms: int) -> bytes:
    """The record value: a ``MembershipEvent`` for one login of the user, no channel."""
    event = chat_pb2.MembershipEvent(
        channel_id="",
        user_id=user_id,
        change=chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED,
        ts_ms=ts_ms,
        actor=user_id,
        session_id=session_id,
    )
    return event.SerializeToString()


def encode_member_renamed(team_id: str, user_id: str, name: str, *, ts_ms: int) -> bytes:
    """The record value: a ``MembershipEvent`` telling one team of the user their new name."""
    event = chat_pb2.MembershipEvent(
        channel_id=team_id,
        user_id=user_id,
        change=chat_pb2.MEMBERSHIP_CHANGE_PROFILE,
        ts_ms=ts_ms,
        actor=user_id,
        user_name=name,
    )
    return event.SerializeToString()


@dataclass(frozen=True, slots=True)
class Renamed:
    """A user's new name, to be told to each of their teams."""

    user_id: str
    name: str
    teams: tuple[str, ...]
    ts_ms: int


class KafkaEvents:
    """The auth service's outbox events through one producer made by ``make_producer`` when
    first needed: ``session_ended`` and ``profile``."""

    def __init__(
        self,
        make_producer: Callable[[], EventProducer],
        *,
        timeout_s: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._make_producer = make_producer
        self._timeout_s = timeout_s
        self._wall_clock = wall_clock
        self._producer: EventProducer | None = None
        # Both outboxes send through the one producer: one send at a time, so a failure closes
        # the producer it failed on, never one another send is still starting or using.
        self._sending = asyncio.Lock()

    async def sessions_ended(self, ended: Sequence[tuple[str, str]]) -> None:
        """One ``session_ended`` event per (user id, session id), sent together (the producer
        batches them); raises unless Kafka acknowledged every one."""
        ts_ms = int(self._wall_clock() * 1000)
        await self._send_all(
            [
                (user_id.encode(), encode_session_ended(user_id, session_id, ts_ms=ts_ms))
                for user_id, session_id in ended
            ]
        )

    async def members_renamed(self, renamed: Sequence[Renamed]) -> None:
        """A ``profile`` event per team of each renamed user, keyed by the team (its other
        events' partition, so a team's members hear them in order); raises unless Kafka
        acknowledged every one."""
        await self._send_all(
            [
                (team.encode(), encode_member_renamed(team, r.user_id, r.name, ts_ms=r.ts_ms))
                for r in renamed
                for team in r.teams
            ]
        )

    async def _send_all(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        if not records:
            return
        headers = [("correlation_id", new_request_id().encode())]
        async with self._sending:
            try:
                async with asyncio.timeout(self._timeout_s):
                    if self._producer is None:
                        producer = self._make_producer()
                        self._producer = producer
                        await producer.start()
                    sending = self._producer
                    await asyncio.gather(
                        *(
                            sending.send_and_wait(
                                EVENTS_TOPIC, value=value, key=key, headers=headers
                            )
                            for key, value in records
                        )
                    )
            except BaseException:
                # A producer that failed once (not started, broker gone) is not trusted again.
                await self.aclose()
                raise

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


class KafkaUserEvents:
    """Publishes with producers from ``make_producer``, retrying for up to ``timeout_s``."""

    def __init__(
        self,
        make_producer: Callable[[], EventProducer],
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._make_producer = make_producer
        self._timeout_s = timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep

    async def user_disabled(self, user_id: str, *, actor: str) -> None:
        value = encode_user_disabled(user_id, actor=actor, ts_ms=int(self._wall_clock() * 1000))
        headers = [("correlation_id", new_request_id().encode())]
        deadline = self._clock() + self._timeout_s
        delay = _FIRST_RETRY_S
        attempts = 0
        while True:
            attempts += 1
            try:
                async with asyncio.timeout(max(deadline - self._clock(), 0.001)):
                    await self._send(value, user_id.encode(), headers)
            except Exception as exc:  # any failure of one attempt: retry until the deadline
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                _log.warning("user_event_attempt_failed", attempt=attempts, error=reason)
            else:
                _log.info("user_event_published", user_id=user_id, attempts=attempts)
                return
            if self._clock() + delay >= deadline:
                raise Unavailable(
                    f"Kafka did not acknowledge the user_disabled event within "
                    f"{self._timeout_s:g} s ({attempts} attempts; last error: {reason})"
                )
            await self._sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)

    async def _send(self, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        producer = self._make_producer()
        try:
            await producer.start()
            await producer.send_and_wait(EVENTS_TOPIC, value=value, key=key, headers=headers)
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
