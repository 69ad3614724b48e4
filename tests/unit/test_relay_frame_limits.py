"""A socket's frame budget: every frame it sends spends it, whether the relay takes it or not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatcore.settings import Settings
from services.relay.hub import Session
from tests.unit.relay_fakes import offline_relay


async def test_refused_frames_spend_the_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unparseable frames are answered `invalid` only while the socket's budget lasts, then
    `rate_limited`: a client cannot make the relay parse and answer without limit."""
    settings = Settings(
        controller_addrs=("controller.invalid:50051",), ws_rate_burst=3, ws_rate_per_s=0.01
    )
    relay = offline_relay(settings, "relay-frame-limits")
    answers: list[dict[str, Any]] = []
    monkeypatch.setattr(relay, "_send", lambda _session, text: answers.append(json.loads(text)))
    socket = Session("a" * 32, object(), {})
    try:
        for raw in ('{"type":"x"}', b"\x00binary", "not json", '{"type":"x"}', "[]"):
            await relay._on_frame(socket, raw)
    finally:
        await relay.link.stop()
    assert [a["code"] for a in answers] == ["invalid"] * 3 + ["rate_limited"] * 2
