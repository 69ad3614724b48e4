"""The security review's relay findings, each against the real pipeline.

Per-connection state dies with the connection (RSS flat over 10,000 failed upgrades), the
per-user cap holds under parallel handshakes, JSON the parser chokes on is an error frame, a
reused client_msg_id is never acked without being stored, only the uploader may send an
attachment, a member added to a deactivated team cannot post, a disabled user's sockets close,
and a removal whose event was lost is still enforced by the membership audit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chatclient import ChatClient, SendFailed, login
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from tests.integration.pipeline_env import PASSWORD, Pipeline, start_pipeline
from tests.integration.ports import free_port
from tests.team_docs import add_member, remove_member

REPO = Path(__file__).resolve().parents[2]
FAILED_UPGRADES = 10_000


@pytest.fixture(scope="module")
async def pipe(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """The pipeline with a membership audit every second."""
    pipeline = await start_pipeline(
        settings, tmp_path_factory.mktemp("hardening-keys"), relay_audit_interval_s=1.0
    )
    yield pipeline
    await pipeline.stop()


async def _next_of(client: ChatClient, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        event = await client.receive(timeout=timeout)
        if event.get("type") == kind:
            return event


async def _stored(pipe: Pipeline, team: str, count: int) -> None:
    """Until ``count`` messages of the team are in the database (acks come before the write)."""
    deadline = asyncio.get_running_loop().time() + 15
    while await pipe.db.messages.count_documents({"channel_id": team}) < count:
        assert asyncio.get_running_loop().time() < deadline, "not stored in time"
        await asyncio.sleep(0.05)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _failed_upgrades(url: str, token: str, count: int) -> None:
    """``count`` GET /v1/ws with a valid token and no Upgrade header, 50 at a time."""
    connector = aiohttp.TCPConnector(limit=50, force_close=True)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> int:
            async with http.get(url, headers=headers) as resp:
                await resp.read()
                return resp.status

        for start in range(0, count, 500):
            statuses = await asyncio.gather(*(one() for _ in range(min(500, count - start))))
            assert set(statuses) == {426}, set(statuses)


async def test_failed_upgrades_keep_no_state_and_the_relay_rss_flat(
    pipe: Pipeline, tmp_path: Path
) -> None:
    """10,000 authenticated requests that never upgrade leave the relay's RSS flat."""
    user = await pipe.user()
    port = free_port()
    env = {
        **os.environ,
        # A cap above the 50 parallel requests: a leaked slot would show up as a 429.
        **dataclasses.replace(
            pipe.settings, relay_port=port, relay_id="rss", ws_max_connections_per_user=60
        ).to_env(),
        "PYTHONUNBUFFERED": "1",
    }
    with (tmp_path / "relay.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.relay",
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        # Warm up allocator pools and caches first, so what follows measures only the leak.
        await _failed_upgrades(f"{url}/v1/ws", user.token, 2_000)
        before = _rss_kib(proc.pid)
        await _failed_upgrades(f"{url}/v1/ws", user.token, FAILED_UPGRADES)
        grown = _rss_kib(proc.pid) - before
        # Before the fix every such request kept ~10 KiB for good (about 100 MiB here).
        assert grown < 8 * 1024, f"RSS grew by {grown} KiB over {FAILED_UPGRADES} failed upgrades"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def test_the_per_user_cap_holds_under_parallel_handshakes(pipe: Pipeline) -> None:
    """25 handshakes at once for one user: exactly the cap get in, the others get 429."""
    user = await pipe.user()
    await pipe.team([user])
    limit = pipe.settings.ws_max_connections_per_user
    results = await asyncio.gather(
        *(pipe.connect(user, 0) for _ in range(limit + 15)), return_exceptions=True
    )
    opened = [r for r in results if isinstance(r, ChatClient)]
    refused = [r for r in results if isinstance(r, InvalidStatus)]
    assert len(opened) == limit
    assert len(refused) == 15
    assert {r.response.status_code for r in refused} == {429}
    for client in opened:
        await client.close()
    # The slots come back with the sockets.
    again = await pipe.connect(user, 0)
    await again.close()


@pytest.mark.parametrize(
    "raw",
    ["[" * 5000 + "]" * 5000, '{"type":"text","to":"*","data":' + "7" * 5000 + "}"],
    ids=["deep-nesting", "5000-digits"],
)
async def test_json_the_parser_chokes_on_gets_an_error_frame_and_the_socket_stays(
    pipe: Pipeline, raw: str
) -> None:
    """Deep nesting or a huge number: an 'invalid' error frame, never a 1011, socket usable."""
    user = await pipe.user()
    team = await pipe.team([user])
    client = await pipe.connect(user)
    await client.send_raw(raw)
    ack = await client.send(team, "still here")
    assert [e["code"] for e in client.errors] == ["invalid"]
    assert ack.id
    assert client.close_code is None
    await client.close()


async def test_a_reused_client_msg_id_with_other_content_is_stored_and_delivered(
    pipe: Pipeline,
) -> None:
    """The same client_msg_id for a different message via another relay: stored, delivered."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    listener = await pipe.connect(bob, 0)
    first = await (await pipe.connect(alice, 0)).send(team, "first", client_msg_id="reused")
    second = await (await pipe.connect(alice, 1)).send(team, "second", client_msg_id="reused")
    assert first.id != second.id
    seen = [(await _next_of(listener, "text"))["data"] for _ in range(2)]
    assert seen == ["first", "second"]
    await _stored(pipe, team, 2)
    stored = await pipe.db.messages.find({"channel_id": team}, {"data": 1}).to_list()
    assert sorted(d["data"] for d in stored) == ["first", "second"]
    await listener.close()


async def test_only_the_uploader_may_send_an_attachment(pipe: Pipeline) -> None:
    """Another member posting someone's attachment id is refused as forbidden."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    attachment = uuid.uuid4().hex
    await pipe.db.attachments.insert_one(
        {
            "_id": attachment,
            "team_id": team,
            "kind": "image",
            "status": "ready",
            "uploader": alice.id,
            "size": 10,
        }
    )
    thief = await pipe.connect(bob)
    with pytest.raises(SendFailed) as refused:
        await thief.send(team, attachment, type="image")
    assert refused.value.code == "forbidden"
    owner = await pipe.connect(alice)
    sent = await owner.send(team, attachment, type="image")
    await _stored(pipe, team, 1)
    stored = await pipe.db.messages.find({"channel_id": team}).to_list()
    assert [d["id"] for d in stored] == [sent.id]
    await thief.close()
    await owner.close()


async def test_a_member_added_to_a_deactivated_team_cannot_post(pipe: Pipeline) -> None:
    """'added' to an inactive team grants reading, not posting."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice], active=False)
    newcomer = await pipe.connect(bob)
    await add_member(pipe.db, team, bob.id)
    await pipe.membership_event(team, bob.id, chat_pb2.MEMBERSHIP_CHANGE_ADDED)
    added = await _next_of(newcomer, "membership")
    assert (added["channel_id"], added["event"]) == (team, "added")
    with pytest.raises(SendFailed) as refused:
        await newcomer.send(team, "may I?")
    assert refused.value.code == "forbidden"
    assert await pipe.db.messages.count_documents({"channel_id": team}) == 0
    await newcomer.close()


async def test_a_disabled_user_is_disconnected_and_cannot_come_back(pipe: Pipeline) -> None:
    """The user_disabled event closes their sockets with 1008; a new socket is refused too."""
    bob = await pipe.user()
    await pipe.team([bob])
    sockets = [await pipe.connect(bob, 0), await pipe.connect(bob, 1)]
    await pipe.db.users.update_one({"_id": bob.id}, {"$set": {"disabled": True}})
    event = chat_pb2.MembershipEvent(
        user_id=bob.id, change=chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED
    )
    await pipe.producer.send_and_wait(
        "chat.events.v1", event.SerializeToString(), key=bob.id.encode()
    )
    for client in sockets:
        await asyncio.wait_for(client.conn.wait_closed(), 10)
        assert client.close_code == 1008
    with pytest.raises((ConnectionClosed, ConnectionError)):
        await pipe.connect(bob, 0)


async def test_a_logout_closes_that_logins_sockets_and_refuses_its_token(pipe: Pipeline) -> None:
    """Logging out closes that login's sockets on both relays (1008 "session ended") and refuses
    its unexpired access token for REST and new sockets; the user's other login stays."""
    bob = await pipe.user()
    team = await pipe.team([bob])
    phone = await login(pipe.auth_url, bob.email, PASSWORD)
    laptop = await login(pipe.auth_url, bob.email, PASSWORD)
    ended = [
        await ChatClient.connect(pipe.ws_url(0), phone.access_token),
        await ChatClient.connect(pipe.ws_url(1), phone.access_token),
    ]
    kept = await ChatClient.connect(pipe.ws_url(0), laptop.access_token)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{pipe.auth_url}/v1/auth/logout", json={"refresh_token": phone.refresh_token}
        ) as resp:
            assert resp.status == 204
        for client in ended:
            await asyncio.wait_for(client.conn.wait_closed(), 10)
            assert (client.close_code, client.conn.close_reason) == (1008, "session ended")
        assert (await kept.send(team, "still here")).seq >= 0
        for token, status in ((phone.access_token, 401), (laptop.access_token, 200)):
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{pipe.api_url}/v1/teams", headers=headers) as resp:
                assert resp.status == status
    for relay in (0, 1):
        with pytest.raises((ConnectionClosed, ConnectionError)):
            await ChatClient.connect(pipe.ws_url(relay), phone.access_token)
    await kept.close()


async def test_a_socket_of_an_ended_login_is_refused_without_the_event(pipe: Pipeline) -> None:
    """A relay that never saw the logout's event still refuses the login: the controller's
    answer to its handshake lookup names it."""
    bob = await pipe.user()
    await pipe.team([bob])
    phone = await login(pipe.auth_url, bob.email, PASSWORD)
    claims = jwt.decode(phone.access_token, options={"verify_signature": False})
    await pipe.db.ended_sessions.insert_one(
        {"_id": claims["sid"], "user_id": bob.id, "until": datetime.now(UTC) + timedelta(hours=1)}
    )
    await asyncio.sleep(1.2)  # past the controller's one-second cache of ended logins
    with pytest.raises(ConnectionClosed) as refused:
        await ChatClient.connect(pipe.ws_url(0), phone.access_token)
    assert refused.value.rcvd is not None
    assert (refused.value.rcvd.code, refused.value.rcvd.reason) == (1008, "session ended")


async def test_a_removal_whose_event_was_lost_is_enforced_by_the_audit(pipe: Pipeline) -> None:
    """No event at all: the relay's audit still takes the channel away within seconds."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    client = await pipe.connect(bob)
    await remove_member(pipe.db, team, bob.id, index=False)
    removed = await _next_of(client, "membership", timeout=15)
    assert (removed["channel_id"], removed["event"]) == (team, "removed")
    with pytest.raises(SendFailed) as refused:
        await client.send(team, "still in?")
    assert refused.value.code == "forbidden"
    await client.close()


async def test_a_message_sent_while_the_relay_drains_is_refused_with_an_error_not_dropped(
    pipe: Pipeline,
) -> None:
    """Once the relay drains (SIGTERM), a new message gets an `unavailable` error naming its
    client_msg_id at once (the close could cut off its ack), and nothing is stored."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    client = await pipe.connect(alice)
    pipe.relays[0].relay.draining = True
    try:
        with pytest.raises(SendFailed) as refused:
            await client.send(team, "just as it stops", client_msg_id="drain-1", timeout=5)
        assert refused.value.code == "unavailable"
    finally:
        pipe.relays[0].relay.draining = False
    await asyncio.sleep(1)
    assert await pipe.db.messages.count_documents({"channel_id": team}) == 0
    await client.close()
