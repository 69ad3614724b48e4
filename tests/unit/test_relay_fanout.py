"""The fan-out writer: frames encoded once, one write per socket per batch, slow sockets cut off."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from services.relay.fanout import WsFanout, encode_text_frame
from services.relay.hub import Session
from services.relay.metrics import RelayMetrics
from tests.waiting import until


@dataclass
class _Transport:
    buffered: int = 0
    writes: list[bytes] = field(default_factory=list)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.writes.append(data)


@dataclass
class _Protocol:
    state: State = State.OPEN


@dataclass(eq=False)
class _Conn:
    transport: _Transport = field(default_factory=_Transport)
    protocol: _Protocol = field(default_factory=_Protocol)
    send_in_progress: object = None
    closed_with: int | None = None

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code


def _session(conn: _Conn) -> Session:
    return Session("u" * 32, conn)


def _fanout(limit: int = 1000) -> tuple[WsFanout, CollectorRegistry]:
    registry = CollectorRegistry()
    return WsFanout(limit, RelayMetrics.create(registry)), registry


def _frames(data: bytes) -> list[str]:
    """Parse concatenated unmasked server frames back into their texts."""
    texts = []
    while data:
        size, offset = data[1] & 0x7F, 2
        if size == 126:
            size, offset = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, offset = int.from_bytes(data[2:10], "big"), 10
        assert data[0] == 0x81
        texts.append(data[offset : offset + size].decode())
        data = data[offset + size :]
    return texts


def test_text_frames_match_the_websocket_library_for_every_length_class() -> None:
    """Our encoding equals websockets' own for short, 16-bit and 64-bit lengths."""
    for text in ("hi", "é" * 100, "x" * 70_000):
        expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        assert encode_text_frame(text) == expected


def test_a_batch_is_one_write_per_socket_in_order_sharing_the_buffer() -> None:
    """Three frames for two sockets: one write each, same bytes object, frames in order."""
    fanout, registry = _fanout()
    a, b = _Conn(), _Conn()
    sa, sb = _session(a), _session(b)
    for text in ("one", "two", "three"):
        fanout.queue([sa, sb], text)
    assert a.transport.writes == []
    fanout.flush()
    assert [len(a.transport.writes), len(b.transport.writes)] == [1, 1]
    assert a.transport.writes[0] is b.transport.writes[0]
    assert _frames(a.transport.writes[0]) == ["one", "two", "three"]
    assert registry.get_sample_value("relay_deliveries_total") == 6


def test_different_frames_per_socket_keep_each_sockets_order() -> None:
    """A DM for one socket between two team messages stays between them for that socket."""
    fanout, _ = _fanout()
    a, b = _Conn(), _Conn()
    sa, sb = _session(a), _session(b)
    fanout.queue([sa, sb], "team 1")
    fanout.queue([sa], "dm")
    fanout.queue([sa, sb], "team 2")
    fanout.flush()
    assert _frames(a.transport.writes[0]) == ["team 1", "dm", "team 2"]
    assert _frames(b.transport.writes[0]) == ["team 1", "team 2"]


async def test_a_socket_over_its_buffer_limit_is_cut_off_and_others_written() -> None:
    """The slow socket gets no write and a 1013 close; the fast one is written as usual."""
    fanout, registry = _fanout(limit=10)
    slow, fast, closed = _Conn(_Transport(buffered=11)), _Conn(), _Conn()
    closed.protocol.state = State.CLOSING
    fanout.queue([_session(slow), _session(fast), _session(closed)], "hello")
    fanout.flush()
    await asyncio.sleep(0)
    assert slow.transport.writes == []
    assert closed.transport.writes == []
    assert _frames(fast.transport.writes[0]) == ["hello"]
    assert slow.closed_with == 1013
    assert registry.get_sample_value("relay_slow_consumer_closes_total") == 1


async def test_a_backlog_the_library_wrote_cuts_the_socket_off_once() -> None:
    """A socket whose buffer grew past the limit outside deliveries (pongs to pings it never
    reads) is closed with 1013 once, and said to be cut off at every check after; one under the
    limit is left alone."""
    fanout, registry = _fanout(limit=10)
    flooding, quiet = _Conn(_Transport(buffered=11)), _Conn(_Transport(buffered=10))
    for _ in range(3):
        assert fanout.check_backlog(flooding)  # type: ignore[arg-type]
        assert not fanout.check_backlog(quiet)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert flooding.closed_with == 1013
    assert quiet.closed_with is None
    assert registry.get_sample_value("relay_slow_consumer_closes_total") == 1


async def test_a_busy_socket_waits_for_its_window_and_a_quiet_one_is_written_at_once() -> None:
    """A socket written within the window gets the next batches in one later write, acks after."""
    registry = CollectorRegistry()
    fanout = WsFanout(1000, RelayMetrics.create(registry), window_s=0.05)
    a, b, c = _Conn(), _Conn(), _Conn()
    sa, sb, sc = _session(a), _session(b), _session(c)
    fanout.queue([sa, sb], "batch 1")
    fanout.flush()  # both quiet: written at once
    assert [_frames(a.transport.writes[0]), _frames(b.transport.writes[0])] == [["batch 1"]] * 2
    fanout.queue([sa, sb, sc], "batch 2")
    fanout.flush()  # a and b were just written: they wait; c was quiet
    fanout.queue([sa, sb, sc], "batch 3")
    fanout.flush()
    fanout.send([sa], "ack")  # waits behind a's batches
    assert len(a.transport.writes) == 1
    assert _frames(c.transport.writes[0]) == ["batch 2"]
    # The window's timer writes what waited: one more write for each of them.
    await until(lambda: [len(x.transport.writes) for x in (a, b, c)] == [2, 2, 2])
    assert _frames(a.transport.writes[1]) == ["batch 2", "batch 3", "ack"]
    assert _frames(b.transport.writes[1]) == ["batch 2", "batch 3"]
    assert [len(a.transport.writes), len(b.transport.writes)] == [2, 2]
    assert _frames(c.transport.writes[1]) == ["batch 3"]
    assert registry.get_sample_value("relay_deliveries_total") == 9
    assert registry.get_sample_value("relay_socket_writes_total") == 6


async def test_write_queued_empties_the_window_at_once() -> None:
    """A drain writes what is in the window without waiting for the timer, and only once."""
    fanout = WsFanout(1000, RelayMetrics.create(CollectorRegistry()), window_s=10.0)
    a = _Conn()
    sa = _session(a)
    fanout.queue([sa], "first")
    fanout.flush()
    fanout.queue([sa], "last words")
    fanout.flush()
    assert len(a.transport.writes) == 1
    fanout.write_queued()
    assert _frames(a.transport.writes[1]) == ["last words"]
    fanout.write_queued()
    assert len(a.transport.writes) == 2


async def test_a_small_audience_is_written_at_once_and_a_large_one_waits_for_its_window() -> None:
    """Within the window a DM's sockets are written at the batch's end (with what waited, in
    order); a frame for more sockets than the audience limit waits for the window."""
    fanout = WsFanout(
        1000, RelayMetrics.create(CollectorRegistry()), window_s=10.0, prompt_audience=2
    )
    room = [_Conn() for _ in range(3)]
    sessions = [_session(c) for c in room]
    fanout.queue(sessions, "room 1")
    fanout.flush()  # quiet sockets: written at once
    fanout.queue(sessions, "room 2")
    fanout.flush()  # three sockets, above the limit: they wait
    assert [len(c.transport.writes) for c in room] == [1, 1, 1]
    fanout.queue(sessions[:2], "dm")
    fanout.flush()  # two sockets: written now, behind the room frame that waited for them
    assert [_frames(c.transport.writes[1]) for c in room[:2]] == [["room 2", "dm"]] * 2
    assert len(room[2].transport.writes) == 1
    fanout.queue(sessions, "room 3")
    fanout.flush()  # the DM's sockets are busy again: the room frame waits for the window
    assert [len(c.transport.writes) for c in room] == [2, 2, 1]
    fanout.write_queued()
    assert [_frames(c.transport.writes[-1]) for c in room] == [
        ["room 3"],
        ["room 3"],
        ["room 2", "room 3"],
    ]
