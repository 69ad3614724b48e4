"""End to end: clients on two relays, real Kafka, the controller and the database in between."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidStatus

from chatclient import ChatClient, SendFailed, history
from chatcore.kafka import MESSAGES_DLQ_TOPIC, MESSAGES_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.auth.keys import KeyRing, TokenIssuer, load_signing_key
from tests.integration.frames import next_message
from tests.integration.pipeline_env import Pipeline, start_pipeline
from tests.team_docs import add_member, remove_member


@pytest.fixture(scope="module")
async def pipe(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """Auth, controller, management and two relays for this module."""
    pipeline = await start_pipeline(settings, tmp_path_factory.mktemp("pipe-keys"))
    yield pipeline
    await pipeline.stop()


async def _drain_until(
    client: ChatClient, predicate: Any, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Events received until ``predicate(events)`` holds, ``presence`` frames left out (they come
    whenever a member's socket opens or closes; these tests follow messages)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not predicate(events):
        events.append(await next_message(client, max(0.01, deadline - time.monotonic())))
    return events


async def _until(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition()`` until it holds (AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _lazy_socket(
    pipe: Pipeline, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket to the first relay with a tiny receive buffer, upgraded (its 101 read)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", pipe.relays[0].port))
    reader, writer = await asyncio.open_connection(sock=raw, limit=1024)
    writer.write(
        (
            f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    assert b"101" in await reader.readline()
    return reader, writer


async def _until_stored(pipe: Pipeline, team: str, count: int) -> None:
    """Until the team's channel holds ``count`` messages in the database."""
    deadline = time.monotonic() + 15
    while await pipe.db.messages.count_documents({"channel_id": team}) < count:
        assert time.monotonic() < deadline, "not stored in time"
        await asyncio.sleep(0.05)


async def _quiet(client: ChatClient, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Whatever arrives within ``seconds`` (nothing, usually), ``presence`` frames left out."""
    events = []
    try:
        while True:
            events.append(await next_message(client, seconds))
    except TimeoutError:
        return events


async def test_team_message_reaches_every_member_on_both_relays_in_order(pipe: Pipeline) -> None:
    """Every member on either relay gets each team message once, in send order, seq rising."""
    alice, bob, carol = pipe.user(), pipe.user(), pipe.user()
    a, b, c = await asyncio.gather(alice, bob, carol)
    team = await pipe.team([a, b, c])
    ca, cb, cc = await pipe.connect(a, 0), await pipe.connect(b, 1), await pipe.connect(c, 1)
    assert (ca.hello["relay"], cb.hello["relay"]) == ("r1", "r2")
    assert team in ca.hello["channels"]
    acks = [await ca.send(team, f"message {i}") for i in range(20)]
    seqs = [ack.seq for ack in acks]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 20
    for client in (ca, cb, cc):
        events = await _drain_until(client, lambda ev: len(ev) >= 20)
        assert [e["data"] for e in events] == [f"message {i}" for i in range(20)]
        assert [e["seq"] for e in events] == seqs
        assert {e["from"] for e in events} == {a.id}
        assert await _quiet(client, 0.3) == []
    stored = await pipe.db.messages.count_documents({"channel_id": team})
    assert stored == 20
    for client in (ca, cb, cc):
        await client.close()


async def test_dm_reaches_only_recipient_and_sender(pipe: Pipeline) -> None:
    """A DM is delivered to the recipient and the sender only; history shows it only to them."""
    a, b, c = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await pipe.team([a, b, c])
    ca, cb, cc = await pipe.connect(a, 0), await pipe.connect(b, 1), await pipe.connect(c, 0)
    ack = await ca.send(team, "psst", to=b.id)
    for client in (ca, cb):
        event = (await _drain_until(client, lambda ev: len(ev) >= 1))[0]
        assert (event["id"], event["to"], event["data"]) == (ack.id, b.id, "psst")
    assert await _quiet(cc) == []
    seen_by_c = await history(pipe.api_url, c.token, team)
    seen_by_b = await history(pipe.api_url, b.token, team)
    assert ack.id not in {m["id"] for m in seen_by_c}
    assert ack.id in {m["id"] for m in seen_by_b}
    for client in (ca, cb, cc):
        await client.close()


async def test_forbidden_and_invalid_frames_are_refused_and_store_nothing(pipe: Pipeline) -> None:
    """Non-members, bad recipients, operator-shaped and malformed frames get errors, socket open."""
    a, b, outsider = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await pipe.team([a, b])
    other_team = await pipe.team([outsider])
    co = await pipe.connect(outsider)
    with pytest.raises(SendFailed) as forbidden:
        await co.send(team, "let me in")
    assert forbidden.value.code == "forbidden"
    ca = await pipe.connect(a)
    with pytest.raises(SendFailed) as not_member:
        await ca.send(team, "hi", to=outsider.id)
    assert not_member.value.code == "forbidden"
    cases: list[dict[str, Any] | str] = [
        {
            "channel_id": {"$ne": None},
            "to": "*",
            "type": "text",
            "data": "x",
            "client_msg_id": "op1",
        },
        {
            "channel_id": team,
            "to": {"$ne": None},
            "type": "text",
            "data": "x",
            "client_msg_id": "op2",
        },
        {"channel_id": team, "to": "*", "type": "sticker", "data": "x", "client_msg_id": "op3"},
        "{not json",
    ]
    for frame in cases:
        await ca.send_raw(frame)
    await _until(lambda: len(ca.errors) >= len(cases))
    assert [e["code"] for e in ca.errors] == [
        "forbidden",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
    ]
    # The socket is still usable, and a forged "from" is replaced by the real sender.
    await ca.send_raw(
        {
            "channel_id": team,
            "to": "*",
            "type": "text",
            "data": "real",
            "from": b.id,
            "client_msg_id": "f1",
        }
    )
    events = await _drain_until(ca, lambda ev: any("from" in e for e in ev))
    assert [e["from"] for e in events if "from" in e] == [a.id]
    assert await pipe.db.messages.count_documents({"channel_id": {"$in": [team, other_team]}}) == 1
    await co.close()
    await ca.close()


async def test_oversized_frame_closes_with_1009(pipe: Pipeline) -> None:
    """A frame above the size limit closes the socket with code 1009."""
    a = await pipe.user()
    await pipe.team([a])
    client = await pipe.connect(a)
    await client.send_raw("x" * (pipe.settings.ws_max_frame_bytes + 10))
    await asyncio.wait_for(client.conn.wait_closed(), 5)
    assert client.close_code == 1009


async def test_same_client_msg_id_is_stored_once_with_one_id(pipe: Pipeline) -> None:
    """Sending one client_msg_id twice stores one message and both acks carry the same id."""
    a = await pipe.user()
    team = await pipe.team([a])
    ca = await pipe.connect(a, 0)
    first = await ca.send(team, "once", client_msg_id="retry-1")
    second = await ca.send(team, "once", client_msg_id="retry-1")
    await ca.close()
    # A retry through the other relay (a reconnect elsewhere) still maps to the same id.
    cb = await pipe.connect(a, 1)
    third = await cb.send(team, "once", client_msg_id="retry-1")
    # A later message in the same channel: once it is stored, any second copy would be too.
    await cb.send(team, "marker")
    await _until_stored(pipe, team, 2)
    assert first.id == second.id == third.id
    assert await pipe.db.messages.count_documents({"channel_id": team, "data": "once"}) == 1
    await cb.close()


async def test_reconnect_and_resume_from_history_without_gaps(pipe: Pipeline) -> None:
    """A client that was away fetches after=<last seq> and, deduped by id, misses nothing."""
    a, b = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([a, b])
    ca, cb = await pipe.connect(a, 0), await pipe.connect(b, 1)
    sent = [await ca.send(team, f"before {i}") for i in range(3)]
    seen = await _drain_until(cb, lambda ev: len(ev) >= 3)
    last_seq = seen[-1]["seq"]
    await cb.close()
    sent += [await ca.send(team, f"while away {i}") for i in range(5)]
    cb = await pipe.connect(b, 0)
    sent += [await ca.send(team, f"after {i}") for i in range(2)]
    # Messages sent while away may still be in flight and arrive live: wait for the last ones.
    last_two = {sent[-1].id, sent[-2].id}
    live = await _drain_until(cb, lambda ev: last_two <= {e.get("id") for e in ev})
    missed = await history(pipe.api_url, b.token, team, after=last_seq)
    merged = {m["id"]: m for m in seen + missed + live}
    assert [merged[ack.id]["seq"] for ack in sent] == [ack.seq for ack in sent]
    assert sorted(m["seq"] for m in merged.values()) == [ack.seq for ack in sent]
    await ca.close()
    await cb.close()


async def test_removed_member_stops_receiving_and_added_member_starts(pipe: Pipeline) -> None:
    """A membership event revokes delivery within a second and grants it without a reconnect."""
    a, b, c = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await pipe.team([a, b])
    ca, cb, cc = await pipe.connect(a, 0), await pipe.connect(b, 1), await pipe.connect(c, 1)
    await remove_member(pipe.db, team, b.id)
    await pipe.membership_event(team, b.id, chat_pb2.MEMBERSHIP_CHANGE_REMOVED)
    removed = (await _drain_until(cb, lambda ev: len(ev) >= 1, timeout=5))[0]
    assert removed == {"type": "membership", "channel_id": team, "event": "removed"}
    with pytest.raises(SendFailed):
        await cb.send(team, "am I still here?")
    await add_member(pipe.db, team, c.id)
    await pipe.membership_event(team, c.id, chat_pb2.MEMBERSHIP_CHANGE_ADDED)
    added = (await _drain_until(cc, lambda ev: len(ev) >= 1, timeout=5))[0]
    # 'added' comes only once the relay's subscription is in force: no wait needed.
    assert added["event"] == "added"
    await ca.send(team, "welcome")
    got = await _drain_until(cc, lambda ev: len(ev) >= 1)
    assert got[0]["data"] == "welcome"
    assert await _quiet(cb) == []
    for client in (ca, cb, cc):
        await client.close()


async def test_typing_reaches_the_others_and_is_not_stored(pipe: Pipeline) -> None:
    """A typing signal is fanned out with from and ts (and the thread it is typed in), and never
    persisted."""
    a, b = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([a, b])
    ca, cb = await pipe.connect(a, 0), await pipe.connect(b, 1)
    await ca.typing(team)
    event = (await _drain_until(cb, lambda ev: len(ev) >= 1))[0]
    assert (event["type"], event["from"], event["channel_id"]) == ("typing", a.id, team)
    assert "thread_id" not in event
    await asyncio.sleep(1.1)  # the relay allows one typing signal a second
    await ca.typing(team, thread_id="f" * 32)
    event = (await _drain_until(cb, lambda ev: len(ev) >= 1))[0]
    assert (event["type"], event["thread_id"]) == ("typing", "f" * 32)
    assert await pipe.db.messages.count_documents({"channel_id": team}) == 0
    await ca.close()
    await cb.close()


async def test_poison_record_goes_to_the_dlq_and_the_partition_moves_on(pipe: Pipeline) -> None:
    """An undecodable record lands in the DLQ and later messages of its partition still flow."""
    a = await pipe.user()
    team = await pipe.team([a])
    ca = await pipe.connect(a)
    poison = await pipe.producer.send_and_wait(
        MESSAGES_TOPIC, b"\xff not protobuf", key=team.encode()
    )
    ack = await ca.send(team, "after the poison")
    event = (await _drain_until(ca, lambda ev: len(ev) >= 1))[0]
    assert event["id"] == ack.id
    assert event["seq"] > poison.offset
    consumer = AIOKafkaConsumer(bootstrap_servers=pipe.settings.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(MESSAGES_DLQ_TOPIC, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, max(0, end - 50))
        batch = await consumer.getmany(tp, timeout_ms=3000)
        assert any(
            r.value == b"\xff not protobuf" and r.key == team.encode() for r in batch.get(tp, [])
        )
    finally:
        await consumer.stop()
    await ca.close()


async def test_handshake_refuses_bad_tokens_and_foreign_origins(pipe: Pipeline) -> None:
    """No token, a bad token, a foreign Origin or a header sent twice get an HTTP error in the
    envelope before any upgrade."""
    a = await pipe.user()
    url = pipe.ws_url()
    for kwargs, status in (
        ({}, 401),
        ({"additional_headers": {"Authorization": "Bearer nope.nope.nope"}}, 401),
        (
            {
                "additional_headers": {"Authorization": f"Bearer {a.token}"},
                "origin": "https://evil.example",
            },
            403,
        ),
        # A header sent twice: an answer in the envelope, not a 500 and a logged traceback.
        (
            {
                "additional_headers": [
                    ("Authorization", f"Bearer {a.token}"),
                    ("Origin", pipe.settings.ws_origins[0]),
                    ("Origin", "https://evil.example"),
                ]
            },
            403,
        ),
        (
            {
                "additional_headers": [
                    ("Authorization", f"Bearer {a.token}"),
                    ("Authorization", f"Bearer {a.token}"),
                ]
            },
            401,
        ),
    ):
        with pytest.raises(InvalidStatus) as info:
            await connect(url, **kwargs)
        assert info.value.response.status_code == status
        assert json.loads(info.value.response.body)["error"]["code"]
    # The query-string form works too.
    client = await ChatClient.connect(url, a.token, in_query=True)
    assert client.hello["user_id"] == a.id
    await client.close()


async def test_expired_token_closes_the_socket_with_1008(pipe: Pipeline) -> None:
    """A token that expires mid-session closes the socket with policy violation (1008)."""
    a = await pipe.user()
    issuer = TokenIssuer(
        KeyRing([load_signing_key(Path(pipe.settings.auth_signing_keys[0]))]),
        issuer=pipe.settings.jwt_issuer,
        audience=pipe.settings.jwt_audience,
        ttl_s=2,
    )
    client = await ChatClient.connect(pipe.ws_url(), issuer.issue(a.id).token)
    await asyncio.wait_for(client.conn.wait_closed(), 15)
    assert client.close_code == 1008


async def test_a_token_accepted_within_the_leeway_gets_its_hello_before_it_closes(
    pipe: Pipeline,
) -> None:
    """A token 2 s past its exp is inside the 5 s clock-skew leeway: the handshake accepts it,
    the socket gets its hello, and closes with 1008 when the leeway ends, not at once."""
    a = await pipe.user()
    issuer = TokenIssuer(
        KeyRing([load_signing_key(Path(pipe.settings.auth_signing_keys[0]))]),
        issuer=pipe.settings.jwt_issuer,
        audience=pipe.settings.jwt_audience,
        ttl_s=-2,
    )
    client = await ChatClient.connect(pipe.ws_url(), issuer.issue(a.id).token)
    assert client.hello["user_id"] == a.id
    opened = asyncio.get_running_loop().time()
    await asyncio.wait_for(client.conn.wait_closed(), 15)
    assert client.close_code == 1008
    assert asyncio.get_running_loop().time() - opened > 1.0


async def test_a_socket_that_pings_and_never_reads_is_cut_off(pipe: Pipeline) -> None:
    """A socket flooding pings (and a few frames) while reading nothing, in no team so that no
    delivery ever checks it, is closed with 1013 once the relay's pongs to it pass the
    send-buffer limit, and what it sends after that makes no more: the relay's buffer for it
    stays near the limit."""
    lazy = await pipe.user()
    reader, writer = await _lazy_socket(pipe, lazy.token)
    while await reader.readline() != b"\r\n":
        pass
    # The hello first: a frame written to the socket checks its backlog too, and must not be
    # what cuts it off here.
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    assert json.loads(await reader.readexactly(size))["type"] == "hello"
    relay = pipe.relays[0].relay
    metrics = relay.metrics
    before = metrics.slow_closes._value.get()
    # Masked frames with a zero mask (the payload goes as it is): pings of 125 bytes, and a few
    # one-byte texts, which the library queues for the relay's handler (its queue pausing and
    # resuming the transport on its own).
    ping = bytes([0x89, 0x80 | 125, 0, 0, 0, 0]) + b"p" * 125
    text = bytes([0x81, 0x80 | 1, 0, 0, 0, 0]) + b"x"
    chunk = (text * 20 + ping * 1500) * 5  # about 1 MB

    def backlog() -> int:
        sessions = relay.hub.sessions_of(lazy.id)
        conns = [cast(ServerConnection, s.conn) for s in sessions]
        return max((c.transport.get_write_buffer_size() for c in conns), default=0)

    sent, after_cut, largest = 0, 0, 0
    try:
        while sent < 40 and after_cut < 8:
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), timeout=1)
            except (TimeoutError, ConnectionError):
                break  # the relay stopped reading us
            sent += 1
            if metrics.slow_closes._value.get() > before:
                after_cut += 1
                largest = max(largest, backlog())
        await _until(lambda: metrics.slow_closes._value.get() == before + 1)
        assert sent < 40
        assert largest < pipe.settings.ws_send_buffer_bytes + 512 * 1024
    finally:
        writer.transport.abort()


async def test_relay_health_endpoints(pipe: Pipeline) -> None:
    """A relay answers /healthz, /readyz (its controller stream is up) and /metrics."""
    port = pipe.relays[0].port
    async with aiohttp.ClientSession() as http:
        for path, status in (("/healthz", 200), ("/readyz", 200), ("/metrics", 200)):
            async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                assert resp.status == status
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert "relay_connections" in await resp.text()


async def test_slow_reader_is_cut_off_without_slowing_others(pipe: Pipeline) -> None:
    """A socket that stops reading is closed with 1013 while a healthy one keeps receiving."""
    a, b, lazy = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await pipe.team([a, b, lazy])
    ca, cb = await pipe.connect(a, 0), await pipe.connect(b, 0)
    # A raw socket with a tiny receive buffer that never reads after the handshake.
    _reader, writer = await _lazy_socket(pipe, lazy.token)
    payload = "y" * 3500
    total = 2500  # about 9 MB: well past the kernel's socket buffers and the relay's limit
    for i in range(total):
        await ca.send_raw({"channel_id": team, "to": "*", "type": "text", "data": f"{i} {payload}"})
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    received = await _drain_until(cb, lambda ev: len(ev) >= total, timeout=60)
    assert len(received) == total
    metrics = pipe.relays[0].relay.metrics
    assert metrics.slow_closes._value.get() >= 1
    writer.close()
    await ca.close()
    await cb.close()
