"""A client that follows the contract end to end: the way to keep a gap-free view.

``SyncedClient`` holds a socket and a ``Timeline``. After every ``hello`` it resumes each channel
from its cursor through the REST history; on ``resync`` it resumes again; on ``membership added``
it starts the new channel; when the socket drops (relay restart 1012, overload 1013, network) it
reconnects with backoff and jitter and resumes. Live frames that arrive during a resume are
buffered by the timeline and merged by id, so nothing is shown twice and nothing is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import aiohttp
from websockets.exceptions import WebSocketException

from chatclient.client import Ack, ChatClient
from chatclient.http import ApiError, history_page
from chatclient.timeline import Timeline

PAGE = 200


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
        self.resyncs = 0
        self.reconnects = 0
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
                except (OSError, TimeoutError, WebSocketException):
                    # The relay is restarting (503 while draining, refused) or unreachable.
                    continue
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
            self._channels.discard(str(frame.get("channel_id")))
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
        while True:
            self._again.discard(channel)
            try:
                await self._page_through(channel)
            except (TimeoutError, ApiError, OSError, aiohttp.ClientError):
                # Still resuming (live frames stay buffered, the cursor unmoved): try again.
                await asyncio.sleep(0.2)
                continue
            if channel not in self._again:
                return

    async def _page_through(self, channel: str) -> None:
        cursor = self.timeline.begin_resume(channel)
        while True:
            page, meta = await history_page(
                self._api_url, self._token, channel, after=cursor, limit=PAGE
            )
            self.timeline.apply_page(channel, page)
            # Without a cursor the latest page is the starting point; older history is for
            # scrolling back, not for resuming.
            if cursor is None or not meta.get("has_more") or not page:
                break
            cursor = int(page[-1]["seq"])
        self.timeline.end_resume(channel)
        self._notify()

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
        if self.client is not None:
            await self.client.close()
        for task in [self._pump, *self._resumes.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
