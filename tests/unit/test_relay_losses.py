"""A relay tells its sockets to resync after a controller stream is lost: at once when another
stream is UP, else as soon as any stream comes UP (DESIGN 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from chatcore.settings import Settings
from services.relay.connection import Relay
from services.relay.controller_link import ControllerLink
from services.relay.hub import Session
from tests.unit.relay_fakes import offline_relay

C1, C2 = "controller-1.invalid:50051", "controller-2.invalid:50051"
TEAM = "t" * 32


class _Resyncs:
    """The sessions the relay sent a resync frame to, in order."""

    def __init__(self) -> None:
        self.sessions: list[Any] = []

    def send(self, targets: Iterable[Any], text: str | bytes) -> None:
        if b"resync" in (text if isinstance(text, bytes) else text.encode()):
            self.sessions.extend(targets)


@pytest.fixture
async def relay(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Relay, _Resyncs, list[bool]]]:
    """A relay over two unreachable controllers whose link's "some stream is UP" is ``up[0]``."""
    settings = Settings(controller_addrs=(C1, C2))
    relay = offline_relay(settings, "relay-losses")
    up = [True]
    monkeypatch.setattr(ControllerLink, "up", property(lambda _self: up[0]))
    resyncs = _Resyncs()
    monkeypatch.setattr(relay._fanout, "send", resyncs.send)
    yield relay, resyncs, up
    await relay.link.stop()


def _greeted(relay: Relay, user: str) -> Session:
    session = Session(user, object(), {TEAM: True})
    relay.hub.attach(session)
    relay.hub.greet(session)
    return session


async def test_a_loss_while_another_stream_is_up_resyncs_at_once(
    relay: tuple[Relay, _Resyncs, list[bool]],
) -> None:
    """C1 breaks while C2 streams: every greeted socket is told at once."""
    r, resyncs, _up = relay
    alice = _greeted(r, "a" * 32)
    r._on_stream_lost(C1)
    assert resyncs.sessions == [alice]


async def test_a_loss_while_no_stream_is_up_is_paid_by_the_next_stream_up(
    relay: tuple[Relay, _Resyncs, list[bool]],
) -> None:
    """C1 breaks while C2 is down (restarting): nothing can be told yet; when C2 comes UP, even
    as a clean start that lost nothing itself, every greeted socket is told, once."""
    r, resyncs, up = relay
    alice = _greeted(r, "a" * 32)
    up[0] = False
    r._on_stream_lost(C1)
    assert resyncs.sessions == []
    up[0] = True
    r._on_stream_up(C2, False)
    assert resyncs.sessions == [alice]
    r._on_stream_up(C1, False)  # paid once: the next stream up owes nothing more
    assert resyncs.sessions == [alice]
