"""A socket's frame budget: every frame it sends spends it, whether the relay takes it or not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chatcore.settings import Settings
from services.relay.connection import (
    INVALID_FRAMES_CLOSE,
    INVALID_OVER_BUDGET_MAX,
    RATE_REFUSALS_BURST,
    RATE_REFUSALS_CLOSE,
)
from services.relay.hub import Session
from tests.unit.relay_fakes import offline_relay


class _Conn:
    """The socket's connection: records how it was closed."""

    def __init__(self) -> None:
        self.closed: list[tuple[int, str]] = []

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


async def test_refused_frames_spend_the_rate_limit_and_then_close_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unparseable frames are answered `invalid` while the socket's budget lasts, then
    `rate_limited`, and a socket that keeps on is closed with 1008, once, and not answered
    meanwhile: a client cannot make the relay parse and answer without limit."""
    settings = Settings(
        controller_addrs=("controller.invalid:50051",), ws_rate_burst=3, ws_rate_per_s=0.01
    )
    relay = offline_relay(settings, "relay-frame-limits")
    answers: list[dict[str, Any]] = []
    monkeypatch.setattr(relay, "_send", lambda _session, text: answers.append(json.loads(text)))
    conn = _Conn()
    socket = Session("a" * 32, conn, {})
    try:
        for raw in ('{"type":"x"}', b"\x00binary", "not json", '{"type":"x"}', "[]"):
            await relay._on_frame(socket, raw)
        assert [a["code"] for a in answers] == ["invalid"] * 3 + ["rate_limited"] * 2
        assert conn.closed == []
        for _ in range(INVALID_OVER_BUDGET_MAX - 2):
            await relay._on_frame(socket, "not json")
        await asyncio.sleep(0)
        assert conn.closed == [(1008, INVALID_FRAMES_CLOSE)]
        # What it sends while the close completes is dropped unanswered, and closes nothing more.
        answered = len(answers)
        for _ in range(3):
            await relay._on_frame(socket, "not json")
        await asyncio.sleep(0)
        assert (len(answers), conn.closed) == (answered, [(1008, INVALID_FRAMES_CLOSE)])
    finally:
        await relay.link.stop()


async def test_a_user_s_sockets_share_one_message_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sockets of one user draw from the user's budget together: past it the next message
    is `rate_limited` and not published, on either socket; another user's messages still go."""
    settings = Settings(
        controller_addrs=("controller.invalid:50051",),
        ws_rate_burst=100,
        ws_user_rate_burst=3,
        ws_user_rate_per_s=0.01,
    )
    relay = offline_relay(settings, "relay-user-limits")
    answers: list[dict[str, Any]] = []
    published: list[str] = []
    monkeypatch.setattr(relay, "_send", lambda _session, text: answers.append(json.loads(text)))

    async def passes(_session: Session, frame: Any) -> Any:
        return frame

    async def publish(user: str, frame: Any, _ack: Any) -> None:
        published.append(f"{user[0]}:{frame.client_msg_id}")

    monkeypatch.setattr(relay.gate, "check_reply", passes)
    monkeypatch.setattr(relay.publisher, "publish", publish)
    team = "f" * 32
    phone, laptop = Session("a" * 32, _Conn(), {}), Session("a" * 32, _Conn(), {})
    other = Session("b" * 32, _Conn(), {})

    def frame(n: int) -> str:
        return json.dumps(
            {"channel_id": team, "to": "*", "type": "text", "data": "hi", "client_msg_id": f"c{n}"}
        )

    try:
        for n, socket in enumerate((phone, laptop, phone, laptop, phone)):
            await relay._on_frame(socket, frame(n))
        await relay._on_frame(other, frame(9))
        assert published == ["a:c0", "a:c1", "a:c2", "b:c9"]
        assert [(a["code"], a["client_msg_id"]) for a in answers] == [
            ("rate_limited", "c3"),
            ("rate_limited", "c4"),
        ]
    finally:
        await relay.link.stop()


async def test_a_user_sending_on_past_the_budget_is_closed_and_reconnecting_does_not_reset_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid messages past the budget are answered `rate_limited`, up to the user's refusals;
    the next closes the socket (1008), a new socket of the same user is closed at its first
    refusal (not after as many again), and another user's socket is not touched."""
    settings = Settings(
        controller_addrs=("controller.invalid:50051",), ws_rate_burst=1, ws_rate_per_s=0.01
    )
    relay = offline_relay(settings, "relay-rate-refusals")
    answers: list[str] = []
    published: list[str] = []
    monkeypatch.setattr(
        relay, "_send", lambda _session, text: answers.append(json.loads(text)["code"])
    )

    async def passes(_session: Session, frame: Any) -> Any:
        return frame

    async def publish(user: str, frame: Any, _ack: Any) -> None:
        published.append(user[0])

    monkeypatch.setattr(relay.gate, "check_reply", passes)
    monkeypatch.setattr(relay.publisher, "publish", publish)
    text = json.dumps(
        {
            "channel_id": "f" * 32,
            "to": "*",
            "type": "text",
            "data": "x" * 4000,
            "client_msg_id": "c",
        }
    )
    first, again, other = _Conn(), _Conn(), _Conn()
    try:
        flooder = Session("a" * 32, first, {})
        for _ in range(1 + RATE_REFUSALS_BURST):
            await relay._on_frame(flooder, text)
        await asyncio.sleep(0)
        assert published == ["a"]
        assert answers == ["rate_limited"] * RATE_REFUSALS_BURST
        assert first.closed == []
        await relay._on_frame(flooder, text)
        await asyncio.sleep(0)
        assert first.closed == [(1008, RATE_REFUSALS_CLOSE)]
        # What it sends while the close completes is dropped unanswered, and closes nothing more.
        answered = len(answers)
        for _ in range(3):
            await relay._on_frame(flooder, text)
        await asyncio.sleep(0)
        assert (len(answers), first.closed) == (answered, [(1008, RATE_REFUSALS_CLOSE)])

        # A new socket has its own budget; its first refusal closes it.
        reconnected = Session("a" * 32, again, {})
        for _ in range(2):
            await relay._on_frame(reconnected, text)
        await relay._on_frame(Session("b" * 32, other, {}), text)
        await asyncio.sleep(0)
        assert again.closed == [(1008, RATE_REFUSALS_CLOSE)]
        assert other.closed == []
        assert published == ["a", "a", "b"]
    finally:
        await relay.link.stop()
