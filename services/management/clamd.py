"""A small asyncio client for ClamAV's clamd: ``zPING`` and ``zINSTREAM`` over TCP or a socket.

The protocol (clamd(8)): a ``z``-prefixed command ends with NUL and so does the reply. INSTREAM
then takes chunks, each a 4-byte big-endian length followed by that many bytes, and a zero-length
chunk to finish; clamd answers ``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR``.

Every failure to get a verdict (refused, timed out, closed early, an ERROR reply) is
``Unavailable``: the caller must fail closed, never treat "no answer" as "clean".
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

from chatcore.errors import Unavailable

# clamd's default StreamMaxLength is 25 MiB; chunks well below its buffer sizes.
CHUNK_BYTES = 64 * 1024
_REPLY_MAX = 4096


@dataclass(frozen=True, slots=True)
class ScanResult:
    """clamd's verdict on one stream; ``signature`` names what was found."""

    clean: bool
    signature: str = ""


@dataclass(frozen=True, slots=True)
class ClamdAddress:
    """Where clamd listens: a unix socket path, or a TCP host and port."""

    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, raw: str) -> ClamdAddress:
        """``/path/to/clamd.sock`` (or ``unix:/path``) or ``host:port``."""
        text = raw.strip()
        if text.startswith("unix:"):
            text = text.removeprefix("unix:")
        if text.startswith("/"):
            return cls(path=text)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"clamd address must be host:port or an absolute path, got {raw!r}")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"


def parse_reply(reply: bytes) -> ScanResult:
    """The verdict in an INSTREAM reply; ``Unavailable`` for an ERROR or anything unexpected."""
    text = reply.rstrip(b"\0\n").decode(errors="replace")
    _, _, verdict = text.partition(": ")
    if verdict == "OK":
        return ScanResult(clean=True)
    if verdict.endswith(" FOUND"):
        return ScanResult(clean=False, signature=verdict.removesuffix(" FOUND").strip())
    # "INSTREAM size limit exceeded. ERROR" and the like: no verdict, so no decision.
    raise Unavailable(f"clamd gave no verdict: {text[:200]!r}")


def instream_frames(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """``zINSTREAM\\0``, then length-prefixed chunks, then the zero-length terminator."""
    frames = [b"zINSTREAM\0"]
    for start in range(0, len(data), chunk_bytes):
        chunk = data[start : start + chunk_bytes]
        frames.append(struct.pack(">I", len(chunk)) + chunk)
    frames.append(struct.pack(">I", 0))
    return frames


class ClamdClient:
    """One connection per call (clamd closes it after each reply in this mode)."""

    def __init__(self, address: ClamdAddress, *, timeout_s: float) -> None:
        self._address = address
        self._timeout_s = timeout_s

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._address.path:
            return await asyncio.open_unix_connection(self._address.path)
        return await asyncio.open_connection(self._address.host, self._address.port)

    async def _exchange(self, frames: list[bytes]) -> bytes:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await self._open()
                for frame in frames:
                    writer.write(frame)
                    # Respect flow control: clamd reads as it scans, never buffer 5 MiB at once.
                    await writer.drain()
                reply = await reader.readuntil(b"\0")
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise Unavailable(
                f"clamd at {self._address} unavailable: {type(exc).__name__}"
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise Unavailable(f"clamd at {self._address} sent an oversized reply") from exc
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        return reply[:_REPLY_MAX]

    async def ping(self) -> bool:
        """True when clamd answers ``PONG``."""
        try:
            reply = await self._exchange([b"zPING\0"])
        except Unavailable:
            return False
        return reply.rstrip(b"\0\n") == b"PONG"

    async def scan(self, data: bytes) -> ScanResult:
        """clamd's verdict on ``data``; ``Unavailable`` whenever there is none."""
        return parse_reply(await self._exchange(instream_frames(data)))
