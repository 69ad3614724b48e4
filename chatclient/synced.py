"""A client that follows the contract end to end: the way to keep a gap-free view.

``SyncedClient`` holds a socket and a ``Timeline``. After every ``hello`` it resumes each channel
from its cursor through the changes feed (``changes?after=``, which carries edits, deletes,
reactions and thread summaries with the messages; a channel with no cursor yet starts from its
latest history page); on ``resync`` it resumes again; on ``membership added`` it starts the new
channel; when the socket drops (relay restart 1012, overload 1013, network) it reconnects with
backoff and jitter and resumes. Live frames that arrive during a resume are buffered by the
timeline and merged, so nothing is shown twice and nothing is missing. ``read`` and ``presence``
frames are kept as they come (``reads``, ``presence``): they never move a cursor.

A resume the server answers 403 or 404 (the user left or was removed from the team, or it is
gone) drops the channel; a 401 (the token expired or was revoked) stops the client, with the
reason in ``failure``: neither can succeed by trying again. Other failures are retried with
growing backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from websockets.exceptions import InvalidStatus, WebSocketException

from chatclient import http
from chatclient.client import Ack, ChatClient
from chatclient.http import ApiError, changes_page, history_page, next_cursor
from chatclient.timeline import Timeline

PAGE = 200
# Answers to a resume that no retry can change: the channel is not the user's (any more).
_GONE = frozenset({403, 404})


class SyncedClient:
    def __init__(
        self,
        ws_url: str,
        api_url: str,
        token: str,
        *,
        reconnect: bool = True,
        max_backoff_s: float = 2.0,
    ) -> None:
        self._ws_url = ws_url
        self._api_url = api_url
        self._token = token
        self._reconnect = reconnect
        self._max_backoff_s = max_backoff_s
        self.timeline = Timeline()
        self.client: ChatClient | None = None
        self.hellos: list[dict[str, Any]] = []
        # The user's read position per channel, as the last read frame said.
        self.reads: dict[str, int] = {}
        # (channel, user) -> "online" | "offline", as presence frames said.
        self.presence: dict[tuple[str, str], str] = {}
        self.resyncs = 0
        self.reconnects = 0
        # Why the client stopped by itself (a 401 on a REST call or at the handshake), if it did.
        self.failure: Exception | None = None
        self._closer: asyncio.Future[None] | None = None
        self._channels: set[str] = set()
        self._pump: asyncio.Task[None] | None = None
        self._resumes: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._closing = False
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Connect, then keep the timeline in sync until ``close``."""
        await self._connect()
        self._pump = asyncio.create_task(self._run())

    async def _connect(self) -> None:
        self.client = await ChatClient.connect(self._ws_url, self._token)
        self.hellos.append(self.client.hello)
        self._channels = set(self.client.hello.get("channels", []))
        for channel in self._channels:
            self._resume(channel)

    async def send(self, channel_id: str, data: str, **kwargs: Any) -> Ack:
        assert self.client is not None
        return await self.client.send(channel_id, data, **kwargs)

    async def reply(self, channel_id: str, root: Mapping[str, Any], data: str) -> Ack:
        """A reply in ``root``'s thread, to the root's people (a DM thread stays a DM)."""
        me = self.hellos[-1]["user_id"] if self.hellos else ""
        to = root["to"] if root["to"] == "*" or root["from"] == me else root["from"]
        return await self.send(
            channel_id, data, to=to, thread_id=root.get("thread_id") or root["id"]
        )

    async def edit(self, channel_id: str, message_id: str, data: str) -> dict[str, Any]:
        return await http.edit(self._api_url, self._token, channel_id, message_id, data)

    async def delete(self, channel_id: str, message_id: str) -> None:
        await http.delete(self._api_url, self._token, channel_id, message_id)

    async def react(
        self, channel_id: str, message_id: str, emoji: str, *, add: bool = True
    ) -> None:
        await http.react(self._api_url, self._token, channel_id, message_id, emoji, add=add)

    async def mark_read(self, channel_id: str, seq: int | None = None) -> None:
        """Read up to ``seq`` (default: the channel's cursor, i.e. everything held)."""
        at = self.timeline.cursor(channel_id) if seq is None else seq
        if at is not None:
            await http.mark_read(self._api_url, self._token, channel_id, at)

    # -- the pump --

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            client = self.client
            assert client is not None
            while True:
                frame = await self._next(client)
                if frame is None:
                    break
                self._on_frame(frame)
            if self._closing or not self._reconnect:
                return
            while not self._closing:
                await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter
                backoff = min(backoff * 2, self._max_backoff_s)
                try:
                    await self._connect()
                except InvalidStatus as exc:
                    if exc.response.status_code in (401, 403):
                        self._fail(exc)  # the token is no longer good: retrying cannot help
                        return
                    continue  # the relay is restarting (503 while draining)
                except (OSError, TimeoutError, WebSocketException):
                    continue  # refused or unreachable
                self.reconnects += 1
                backoff = 0.1
                break

    async def _next(self, client: ChatClient) -> dict[str, Any] | None:
        """The next frame, or None once the socket is closed and drained."""
        while True:
            try:
                return client.events.get_nowait()
            except asyncio.QueueEmpty:
                pass
            if client.reader_done:
                return None
            getter = asyncio.ensure_future(client.events.get())
            closed = asyncio.ensure_future(client.wait_reader())
            try:
                await asyncio.wait([getter, closed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (getter, closed):
                    if not waiter.done():
                        waiter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiter
            if not getter.cancelled():
                return getter.result()

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "resync":
            self.resyncs += 1
            for channel in self._channels:
                self._resume(channel)
        elif kind == "membership" and frame.get("event") == "added":
            channel = str(frame["channel_id"])
            self._channels.add(channel)
            self._resume(channel)
        elif kind == "membership" and frame.get("event") == "removed":
            self._drop(str(frame.get("channel_id")))
        elif kind == "read":
            channel = str(frame["channel_id"])
            self.reads[channel] = max(self.reads.get(channel, 0), int(frame["seq"]))
            self._notify()
        elif kind == "presence":
            self.presence[(str(frame["channel_id"]), str(frame["user_id"]))] = str(frame["status"])
            self._notify()
        elif self.timeline.live(frame):
            self._notify()

    # -- resumes --

    def _resume(self, channel: str) -> None:
        # Now, not when the task first runs: a live frame handled in between (the pump reads on
        # without yielding) would move the cursor past what this resume must fetch.
        self.timeline.begin_resume(channel)
        running = self._resumes.get(channel)
        if running is not None and not running.done():
            self._again.add(channel)  # once more after this one: it may have started too early
            return
        self._resumes[channel] = asyncio.create_task(self._resume_loop(channel))

    async def _resume_loop(self, channel: str) -> None:
        backoff = 0.2
        while True:
            self._again.discard(channel)
            try:
                await self._page_through(channel)
            except ApiError as exc:
                if exc.status == 401:
                    self._fail(exc)
                    return
                if exc.status in _GONE:
                    self._drop(channel)
                    return
                backoff = await self._pause(backoff)
                continue
            except (TimeoutError, OSError, aiohttp.ClientError):
                # Still resuming (live frames stay buffered, the cursor unmoved): try again.
                backoff = await self._pause(backoff)
                continue
            if channel not in self._again:
                # Only now: frames buffered since a later resync may lie past what it must fetch.
                self.timeline.end_resume(channel)
                self._notify()
                return

    async def _pause(self, backoff: float) -> float:
        await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter
        return min(backoff * 2, self._max_backoff_s)

    def _drop(self, channel: str) -> None:
        """The channel is no longer the user's: stop resuming it; what it holds stays."""
        self._channels.discard(channel)
        self._again.discard(channel)
        running = self._resumes.pop(channel, None)
        if running is not None and running is not asyncio.current_task():
            running.cancel()
        if self.timeline.resuming(channel):
            self.timeline.end_resume(channel)
        self._notify()

    def _fail(self, exc: Exception) -> None:
        """A 401: the token is dead, so stop (``failure`` says why); nothing retries."""
        self.failure = exc
        self._closing = True
        for channel in list(self._resumes):
            self._drop(channel)
        if self.client is not None:
            self._closer = asyncio.ensure_future(self.client.close())

    async def _page_through(self, channel: str) -> None:
        cursor = self.timeline.begin_resume(channel)
        if cursor is None:
            # No cursor yet: the latest page is the starting point; older history is for
            # scrolling back, not for resuming.
            page, _meta = await history_page(self._api_url, self._token, channel, limit=PAGE)
            self.timeline.apply_page(channel, page)
        else:
            # From just below the cursor: a thread reply and its root's ``thread`` change share a
            # seq, and a connection can break between the two frames; what is fetched again is
            # skipped by the timeline's dedupe.
            # Page after page until ``has_more`` says the end: a page can be short, even empty,
            # with more beyond (the server reads a bounded part of the channel per request).
            after: int | None = cursor - 1
            while after is not None:
                entries, meta = await changes_page(
                    self._api_url, self._token, channel, after=after, limit=PAGE
                )
                self.timeline.apply_changes(channel, entries)
                after = next_cursor(meta, after, forward=True)

    # -- waiting --

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def settled(self) -> bool:
        """No resume running or due."""
        return all(t.done() for t in self._resumes.values()) and not self._again

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Until ``condition()`` holds (checked after every change), or TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not reached")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def close(self) -> None:
        self._closing = True
        if self._closer is not None:
            await self._closer
        if self.client is not None:
            await self.client.close()
        for task in [self._pump, *self._resumes.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
