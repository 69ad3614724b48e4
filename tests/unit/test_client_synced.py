"""``SyncedClient`` over a scripted socket and history: when a resume starts, what it asks for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import chatclient.synced
from chatclient import ChatClient, SyncedClient

TEAM = "t" * 32


def _m(seq: int) -> dict[str, Any]:
    return {"id": f"m{seq}", "seq": seq, "channel_id": TEAM, "type": "text", "data": "x"}


class _Socket:
    """The part of ``ChatClient`` the synced client reads: frames the test puts, then closed."""

    def __init__(self) -> None:
        self.hello = {"type": "hello", "channels": [TEAM]}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()

    @property
    def reader_done(self) -> bool:
        return self.closed.is_set()

    async def wait_reader(self) -> None:
        await self.closed.wait()

    async def close(self) -> None:
        self.closed.set()


class _History:
    """Answers history reads from a fixed list of stored messages; records each ``after``."""

    def __init__(self, stored: list[dict[str, Any]]) -> None:
        self.stored = stored
        self.afters: list[int | None] = []

    async def __call__(
        self, _base: str, _token: str, _team: str, *, after: int | None = None, limit: int = 200
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        self.afters.append(after)
        page = [m for m in self.stored if after is None or m["seq"] > after][:limit]
        return page, {"has_more": False}


async def _settled(client: SyncedClient) -> None:
    await client.wait_for(client.settled, 5)


async def test_a_resync_resumes_from_the_cursor_it_arrived_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Live frames right behind a `resync` wait for its resume; they do not move the cursor."""
    socket = _Socket()
    history = _History(stored=[])

    async def connect(_url: str, _token: str) -> _Socket:
        return socket

    monkeypatch.setattr(ChatClient, "connect", connect)
    monkeypatch.setattr(chatclient.synced, "history_page", history)
    client = SyncedClient("ws://relay", "http://api", "token", reconnect=False)
    await client.start()
    await _settled(client)  # the resume after hello found nothing
    # Message 11 was missed live (a lost stream); the relay says so, then 12 arrives live, all
    # in one read: the resume must start from 10, where the client was when told.
    history.stored = [_m(10), _m(11), _m(12)]
    for frame in (_m(10), {"type": "resync"}, _m(12)):
        socket.events.put_nowait(frame)
    await client.wait_for(lambda: client.resyncs == 1 and client.settled(), 5)
    assert history.afters == [None, 10]
    assert [m["seq"] for m in client.timeline.messages(TEAM)] == [10, 11, 12]
    await client.close()
