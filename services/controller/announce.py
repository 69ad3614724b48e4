"""A controller announces its gRPC address on ``chat.controllers.v1`` so relays find it.

Relays keep one Subscribe stream per controller; one they do not know of would own partitions
whose deliveries reach nobody. So a controller announces itself before it consumes (relays
subscribe within its start grace), then every ``interval_s`` while it runs, each record valid for
three intervals; after its goodbye it announces that it is leaving. A controller killed with -9
stops announcing and relays drop it after the ttl (services/relay/discovery.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

from chatcore.kafka import CONTROLLERS_TOPIC
from chatcore.logging import get_logger
from chatcore.proto.chat.v1 import chat_pb2

_log = get_logger("controller.announce")
# How many intervals an announcement stays valid: one lost record is no reason to drop anyone.
TTL_INTERVALS = 3


class Sender(Protocol):
    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> object: ...


def advertised_address(configured: str, host: str, port: int) -> str:
    """The address relays dial: the configured one, else the bound host (the machine's name when
    bound to every interface) with the gRPC port."""
    if configured:
        return configured
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a comparison, not a bind
        host = socket.gethostname()
    return f"{host}:{port}"


class Announcer:
    def __init__(
        self,
        sender: Sender,
        address: str,
        *,
        group: str,
        interval_s: float,
        timeout_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sender = sender
        self.address = address
        self._group = group
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._sleep = sleep

    def record(self, *, leaving: bool) -> bytes:
        return chat_pb2.ControllerAnnouncement(
            address=self.address,
            group=self._group,
            leaving=leaving,
            ttl_ms=int(self._interval_s * TTL_INTERVALS * 1000),
        ).SerializeToString()

    async def announce(self, *, leaving: bool = False) -> bool:
        """One announcement; False (logged) if Kafka did not take it in time."""
        try:
            await asyncio.wait_for(
                self._sender.send_and_wait(
                    CONTROLLERS_TOPIC, self.record(leaving=leaving), self.address.encode()
                ),
                self._timeout_s,
            )
        except Exception as exc:
            _log.warning("announce_failed", address=self.address, error=type(exc).__name__)
            return False
        return True

    async def run(self) -> None:
        """Announce now and then every interval, until cancelled."""
        while True:
            await self.announce()
            await self._sleep(self._interval_s)
