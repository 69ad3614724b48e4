"""The clamd client against a fake clamd speaking the INSTREAM protocol over TCP and a socket."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chatcore.errors import Unavailable
from services.management.clamd import (
    ClamdAddress,
    ClamdClient,
    ScanResult,
    instream_frames,
    parse_reply,
)

Verdict = Callable[[bytes], bytes]


class FakeClamd:
    """Reads one command; for INSTREAM collects the chunks and answers ``verdict(data)``."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.received: list[bytes] = []
        self.chunk_sizes: list[int] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = await reader.readuntil(b"\0")
        if command == b"zPING\0":
            writer.write(b"PONG\0")
        elif command == b"zINSTREAM\0":
            data = bytearray()
            while True:
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                self.chunk_sizes.append(size)
                if size == 0:
                    break
                data += await reader.readexactly(size)
            self.received.append(bytes(data))
            writer.write(self.verdict(bytes(data)))
        await writer.drain()
        writer.close()
        await writer.wait_closed()


def _default_verdict(data: bytes) -> bytes:
    return b"stream: Eicar-Test-Signature FOUND\0" if b"EICAR" in data else b"stream: OK\0"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeClamd, ClamdAddress]]:
    """A fake clamd on a free TCP port."""
    clamd = FakeClamd(_default_verdict)
    server = await asyncio.start_server(clamd.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield clamd, ClamdAddress(host="127.0.0.1", port=port)
    server.close()
    await server.wait_closed()


async def test_clean_stream_is_sent_in_length_prefixed_chunks(
    fake: tuple[FakeClamd, ClamdAddress],
) -> None:
    """The whole payload arrives in ≤ 64 KiB chunks ending with a zero-length one; verdict OK."""
    clamd, address = fake
    data = bytes(range(256)) * 1000
    result = await ClamdClient(address, timeout_s=5).scan(data)
    assert result == ScanResult(clean=True)
    assert clamd.received == [data]
    assert clamd.chunk_sizes[-1] == 0
    assert max(clamd.chunk_sizes) <= 64 * 1024


async def test_found_reply_names_the_signature(fake: tuple[FakeClamd, ClamdAddress]) -> None:
    """``stream: <sig> FOUND`` is an infected verdict carrying the signature."""
    _clamd, address = fake
    result = await ClamdClient(address, timeout_s=5).scan(b"xxEICARxx")
    assert result == ScanResult(clean=False, signature="Eicar-Test-Signature")


async def test_error_reply_is_unavailable(fake: tuple[FakeClamd, ClamdAddress]) -> None:
    """An ERROR reply is no verdict: the caller must fail closed."""
    clamd, address = fake
    clamd.verdict = lambda _data: b"INSTREAM size limit exceeded. ERROR\0"
    with pytest.raises(Unavailable):
        await ClamdClient(address, timeout_s=5).scan(b"data")


async def test_ping_answers_pong(fake: tuple[FakeClamd, ClamdAddress]) -> None:
    """PING is answered with PONG."""
    _clamd, address = fake
    assert await ClamdClient(address, timeout_s=5).ping() is True


async def test_refused_connection_is_unavailable() -> None:
    """Nobody listening: Unavailable for scans, False for pings."""
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = ClamdClient(ClamdAddress(host="127.0.0.1", port=port), timeout_s=2)
    with pytest.raises(Unavailable):
        await client.scan(b"data")
    assert await client.ping() is False


async def test_silent_server_times_out_as_unavailable() -> None:
    """A clamd that never answers is Unavailable after the timeout, not a hang."""
    hold = asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Unavailable):
            await ClamdClient(ClamdAddress(host="127.0.0.1", port=port), timeout_s=0.3).scan(b"x")
    finally:
        hold.set()
        server.close()
        await server.wait_closed()


async def test_closed_without_reply_is_unavailable(fake: tuple[FakeClamd, ClamdAddress]) -> None:
    """A connection closed before the NUL-terminated reply is Unavailable."""
    clamd, address = fake
    clamd.verdict = lambda _data: b"stream: O"
    with pytest.raises(Unavailable):
        await ClamdClient(address, timeout_s=5).scan(b"data")


async def test_unix_socket_address(tmp_path: Path) -> None:
    """The same protocol over a unix socket."""
    clamd = FakeClamd(_default_verdict)
    path = tmp_path / "clamd.sock"
    server = await asyncio.start_unix_server(clamd.handle, str(path))
    try:
        client = ClamdClient(ClamdAddress.parse(f"unix:{path}"), timeout_s=5)
        assert await client.scan(b"fine") == ScanResult(clean=True)
    finally:
        server.close()
        await server.wait_closed()


def test_frames_and_replies() -> None:
    """Frames are the command, big-endian length-prefixed chunks and a terminator."""
    frames = instream_frames(b"abcde", chunk_bytes=2)
    assert frames == [
        b"zINSTREAM\0",
        b"\0\0\0\x02ab",
        b"\0\0\0\x02cd",
        b"\0\0\0\x01e",
        b"\0\0\0\0",
    ]
    assert instream_frames(b"") == [b"zINSTREAM\0", b"\0\0\0\0"]
    assert parse_reply(b"stream: OK\0") == ScanResult(clean=True)
    assert parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0").signature == "Win.Test.EICAR_HDB-1"
    with pytest.raises(Unavailable):
        parse_reply(b"garbage\0")


def test_address_parsing() -> None:
    """host:port, [v6]:port, /path and unix:/path; anything else is refused."""
    assert ClamdAddress.parse("127.0.0.1:3310") == ClamdAddress(host="127.0.0.1", port=3310)
    assert ClamdAddress.parse("[::1]:3310") == ClamdAddress(host="::1", port=3310)
    assert ClamdAddress.parse("/run/clamd.ctl") == ClamdAddress(path="/run/clamd.ctl")
    assert ClamdAddress.parse("unix:/run/c.sock") == ClamdAddress(path="/run/c.sock")
    for bad in ("clamd", "host:", ":3310", "host:port"):
        with pytest.raises(ValueError, match="clamd address"):
            ClamdAddress.parse(bad)
