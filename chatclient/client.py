"""The WebSocket side: one connection, acks matched to sends by ``client_msg_id``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin


class SendFailed(Exception):
    """The relay answered a send with an ``error`` frame (``code`` says why)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Ack:
    client_msg_id: str
    id: str
    seq: int
    ts: str


class ChatClient:
    """Use ``await ChatClient.connect(url, token)``; ``hello`` holds the server's first frame."""

    def __init__(self, conn: ClientConnection, hello: dict[str, Any]) -> None:
        self.conn = conn
        self.hello = hello
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: list[dict[str, Any]] = []
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, token: str, *, in_query: bool = False, origin: str | None = None
    ) -> ChatClient:
        headers = {} if in_query else {"Authorization": f"Bearer {token}"}
        target = f"{url}?token={token}" if in_query else url
        conn = await connect(
            target,
            additional_headers=headers,
            origin=Origin(origin) if origin else None,
            compression=None,
            max_size=2**20,
        )
        hello = json.loads(await asyncio.wait_for(conn.recv(), 10))
        if hello.get("type") != "hello":
            await conn.close()
            raise ConnectionError(f"expected hello, got {hello.get('type')!r}")
        return cls(conn, hello)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                frame = json.loads(raw)
                kind = frame.get("type")
                cmid = frame.get("client_msg_id", "")
                if kind == "ack" and cmid in self._pending:
                    fut = self._pending.pop(cmid)
                    if not fut.done():
                        fut.set_result(Ack(cmid, frame["id"], int(frame["seq"]), frame["ts"]))
                elif kind == "error":
                    self.errors.append(frame)
                    fut_err = self._pending.pop(cmid, None) if cmid else None
                    if fut_err is not None and not fut_err.done():
                        fut_err.set_exception(SendFailed(frame["code"], frame["message"]))
                else:
                    self.events.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed before the ack"))

    async def send(
        self,
        channel_id: str,
        data: str,
        *,
        to: str = "*",
        type: str = "text",
        client_msg_id: str | None = None,
        thread_id: str | None = None,
        timeout: float = 10.0,
    ) -> Ack:
        """Send a message (a thread reply with ``thread_id``: the root's id, with the root's
        ``to``) and wait for its ack (``SendFailed`` on an error frame)."""
        cmid = client_msg_id or uuid.uuid4().hex
        fut: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[cmid] = fut
        frame = {"channel_id": channel_id, "to": to, "type": type, "data": data}
        frame["client_msg_id"] = cmid
        if thread_id is not None:
            frame["thread_id"] = thread_id
        await self.conn.send(json.dumps(frame))
        return await asyncio.wait_for(fut, timeout)

    async def send_raw(self, frame: dict[str, Any] | str) -> None:
        """Send a frame as is (tests of the relay's validation use this)."""
        await self.conn.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def typing(self, channel_id: str, to: str = "*", *, thread_id: str = "") -> None:
        """A typing signal: in the conversation's box, or in a thread's (``thread_id``)."""
        frame = {"type": "typing", "channel_id": channel_id, "to": to}
        if thread_id:
            frame["thread_id"] = thread_id
        await self.send_raw(frame)

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame that is not an ack or error: a message, typing, membership, resync..."""
        return await asyncio.wait_for(self.events.get(), timeout)

    @property
    def reader_done(self) -> bool:
        """The socket is closed and every frame it carried is in ``events``."""
        return self._reader.done()

    async def wait_reader(self) -> None:
        """Until the socket is closed (``reader_done``)."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._reader)

    async def close(self) -> None:
        await self.conn.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code
