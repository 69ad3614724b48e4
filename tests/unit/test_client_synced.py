"""``SyncedClient`` over a scripted socket and history: when a resume starts, what it asks for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

import chatclient.synced
from chatclient import ChatClient, SyncedClient
from chatclient.http import ApiError, next_cursor

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
    """Answers history reads (and, from a cursor on, the changes feed) from a fixed list of
    stored messages; records each ``after``."""

    def __init__(self, stored: list[dict[str, Any]]) -> None:
        self.stored = stored
        self.afters: list[int | None] = []

    async def __call__(
        self, _base: str, _token: str, _team: str, *, after: int | None = None, limit: int = 200
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        self.afters.append(after)
        page = [m for m in self.stored if after is None or m["seq"] > after][:limit]
        return page, {"has_more": False}

    async def changes(
        self, base: str, token: str, team: str, *, after: int, limit: int = 200
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        page, meta = await self(base, token, team, after=after, limit=limit)
        entries = [{"seq": m["seq"], "change": "created", "message": m} for m in page]
        return entries, {**meta, "next_cursor": page[-1]["seq"] if page else after}


_ChangesPage = Callable[..., Awaitable[tuple[list[dict[str, Any]], dict[str, Any]]]]


def _synced(
    monkeypatch: pytest.MonkeyPatch, socket: _Socket, history: _History, changes: _ChangesPage
) -> SyncedClient:
    """A client that does not reconnect, over the scripted socket, history and changes feed."""

    async def connect(_url: str, _token: str) -> _Socket:
        return socket

    monkeypatch.setattr(ChatClient, "connect", connect)
    monkeypatch.setattr(chatclient.synced, "history_page", history)
    monkeypatch.setattr(chatclient.synced, "changes_page", changes)
    return SyncedClient("ws://relay", "http://api", "token", reconnect=False)


async def _settled(client: SyncedClient) -> None:
    await client.wait_for(client.settled, 5)


async def test_a_resync_resumes_from_the_cursor_it_arrived_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Live frames right behind a `resync` wait for its resume; they do not move the cursor."""
    socket = _Socket()
    history = _History(stored=[])

    client = _synced(monkeypatch, socket, history, history.changes)
    await client.start()
    await _settled(client)  # the resume after hello found nothing
    # Message 11 was missed live (a lost stream); the relay says so, then 12 arrives live, all
    # in one read: the resume must start from 10, where the client was when told (asking
    # after 9: a reply and its root's thread change share a seq).
    history.stored = [_m(10), _m(11), _m(12)]
    for frame in (_m(10), {"type": "resync"}, _m(12)):
        socket.events.put_nowait(frame)
    await client.wait_for(lambda: client.resyncs == 1 and client.settled(), 5)
    assert history.afters == [None, 9]
    assert [m["seq"] for m in client.timeline.messages(TEAM)] == [10, 11, 12]
    await client.close()


async def test_a_resync_during_a_resume_keeps_the_buffer_until_the_second_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resync that lands mid-resume: frames buffered meanwhile wait for the run it asked for."""
    socket = _Socket()
    history = _History(stored=[])
    gate = asyncio.Event()
    gate.set()

    async def gated(
        base: str, token: str, team: str, *, after: int, limit: int = 200
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        # The page is read now; the answer comes when the test lets it through.
        answer = await history.changes(base, token, team, after=after, limit=limit)
        await gate.wait()
        return answer

    client = _synced(monkeypatch, socket, history, gated)
    await client.start()
    await _settled(client)
    socket.events.put_nowait(_m(10))
    await client.wait_for(lambda: len(client.timeline.messages(TEAM)) == 1, 5)
    # First resync: its page is read while only 11 is stored, and held back.
    gate.clear()
    history.stored = [_m(10), _m(11)]
    socket.events.put_nowait({"type": "resync"})
    await client.wait_for(lambda: history.afters == [None, 9], 5)
    # 12 and 13 are stored but missed live; the relay says so again, then 14 arrives live.
    history.stored = [_m(10), _m(11), _m(12), _m(13), _m(14)]
    socket.events.put_nowait({"type": "resync"})
    socket.events.put_nowait(_m(14))
    await asyncio.sleep(0.05)
    gate.set()
    await client.wait_for(lambda: client.resyncs == 2 and client.settled(), 5)
    assert history.afters == [None, 9, 10]
    assert [m["seq"] for m in client.timeline.messages(TEAM)] == [10, 11, 12, 13, 14]
    await client.close()


class _Refusing:
    """The REST calls answering one error status; counts them."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    async def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        self.calls += 1
        raise ApiError(self.status, "x", "refused")


def _refused_client(
    monkeypatch: pytest.MonkeyPatch, status: int, **kwargs: Any
) -> tuple[SyncedClient, _Socket, _Refusing]:
    """A client over one scripted socket whose every history and changes read answers ``status``."""
    socket = _Socket()
    refusing = _Refusing(status)

    async def connect(_url: str, _token: str) -> _Socket:
        return socket

    monkeypatch.setattr(ChatClient, "connect", connect)
    monkeypatch.setattr(chatclient.synced, "history_page", refusing)
    monkeypatch.setattr(chatclient.synced, "changes_page", refusing)
    return SyncedClient("ws://relay", "http://api", "token", **kwargs), socket, refusing


@pytest.mark.parametrize("status", [403, 404])
async def test_a_resume_answered_403_or_404_drops_the_channel_and_stops(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """Removed from the team (or it is gone) while resuming: one request, the channel dropped,
    the client settled, its socket kept for the other channels."""
    client, socket, refusing = _refused_client(monkeypatch, status, reconnect=False)
    await client.start()
    await _settled(client)
    await asyncio.sleep(0.5)
    assert refusing.calls == 1
    assert client.failure is None
    assert not socket.closed.is_set()
    await client.close()


async def test_a_resume_answered_401_stops_the_client_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The token expired: no retries, the socket closed, ``failure`` holds the 401."""
    client, socket, refusing = _refused_client(monkeypatch, 401)
    await client.start()
    await client.wait_for(lambda: client.failure is not None, 5)
    await asyncio.sleep(0.5)
    assert refusing.calls == 1
    assert isinstance(client.failure, ApiError)
    assert client.failure.status == 401
    assert socket.closed.is_set()
    assert client.settled()
    await client.close()


async def test_a_failing_resume_retries_with_growing_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 503 is retried, but not five times a second forever: the pauses grow to the maximum."""
    client, _socket, refusing = _refused_client(monkeypatch, 503, max_backoff_s=0.4)
    await client.start()
    await asyncio.sleep(2.0)
    assert 3 <= refusing.calls <= 8  # 0.2 s then 0.4 s pauses (jittered): not ten
    assert not client.settled()
    await client.close()


async def test_a_reconnect_refused_401_stops_instead_of_retrying_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket drops and the relay now refuses the token with 401: one attempt, then the
    client stops with the reason (a 503 while a relay drains is retried instead)."""
    first = _Socket()
    history = _History(stored=[])
    attempts: list[int] = []

    async def connect(_url: str, _token: str) -> _Socket:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            return first
        status = 503 if len(attempts) == 2 else 401
        raise InvalidStatus(Response(status, "refused", Headers()))

    monkeypatch.setattr(ChatClient, "connect", connect)
    monkeypatch.setattr(chatclient.synced, "history_page", history)
    client = SyncedClient("ws://relay", "http://api", "token", max_backoff_s=0.1)
    await client.start()
    await _settled(client)
    await first.close()
    await client.wait_for(lambda: client.failure is not None, 5)
    await asyncio.sleep(0.3)
    assert len(attempts) == 3
    assert isinstance(client.failure, InvalidStatus)
    await client.close()


async def test_a_resume_goes_on_through_an_empty_page_that_says_there_is_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server stopped a changes page short of anything for this reader (others' DMs): the
    resume follows its ``next_cursor`` rather than end there, so what was missed live arrives
    before what came after it."""
    socket = _Socket()
    history = _History(stored=[])
    afters: list[int] = []

    async def bounded(
        base: str, token: str, team: str, *, after: int, limit: int = 200
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        afters.append(after)
        if after < 100:  # from 9 it reads up to 100, others' DMs only, and stops short
            return [], {"has_more": True, "next_cursor": 100}
        return await history.changes(base, token, team, after=after, limit=limit)

    client = _synced(monkeypatch, socket, history, bounded)
    await client.start()
    await _settled(client)
    socket.events.put_nowait(_m(10))
    await client.wait_for(lambda: len(client.timeline.messages(TEAM)) == 1, 5)
    # 150 was missed live; a resync, then 160 live.
    history.stored = [_m(10), _m(150), _m(160)]
    for frame in ({"type": "resync"}, _m(160)):
        socket.events.put_nowait(frame)
    await client.wait_for(lambda: client.resyncs == 1 and client.settled(), 5)
    assert afters == [9, 100]
    assert [m["seq"] for m in client.timeline.messages(TEAM)] == [10, 150, 160]
    await client.close()


def test_the_next_page_starts_at_the_servers_cursor_until_has_more_says_the_end() -> None:
    """A short or empty page with more beyond goes on from ``next_cursor``; no more, a missing
    cursor or one that does not move ends the walk (forward and backward)."""
    assert next_cursor({"has_more": True, "next_cursor": 100}, 9, forward=True) == 100
    assert next_cursor({"has_more": True, "next_cursor": 5}, None, forward=False) == 5
    assert next_cursor({"has_more": False, "next_cursor": 100}, 9, forward=True) is None
    assert next_cursor({"has_more": True}, 9, forward=True) is None
    assert next_cursor({"has_more": True, "next_cursor": 9}, 9, forward=True) is None
    assert next_cursor({"has_more": True, "next_cursor": 12}, 9, forward=False) is None
    assert next_cursor({"has_more": True, "next_cursor": True}, 0, forward=True) is None
