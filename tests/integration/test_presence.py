"""Presence end to end (DESIGN 5b) through two relays, Kafka and the management service: frames
within seconds of a member's first socket opening or last one closing, no flap when a member
moves between relays, and a relay that stops reporting has its users go offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatclient import ChatClient
from chatclient import http as rest
from chatcore.kafka import make_reader
from chatcore.presence import Transition
from chatcore.presence_feed import PresenceFeed
from chatcore.settings import Settings
from tests.integration.pipeline_env import Pipeline, User, start_pipeline

# Short heartbeats so that a test sees expiry in seconds (the contract allows 60 s).
HEARTBEAT_S = 1.0
TTL_S = 3 * HEARTBEAT_S


@pytest.fixture
async def pipe(settings: Settings, tmp_path: Path) -> AsyncIterator[Pipeline]:
    """The pipeline with one-second presence heartbeats and a short grace."""
    pipeline = await start_pipeline(
        settings, tmp_path, presence_heartbeat_s=HEARTBEAT_S, presence_grace_s=0.5
    )
    try:
        yield pipeline
    finally:
        await pipeline.stop()


async def _team(pipe: Pipeline, owner: User, *members: User) -> str:
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {owner.token}"}
        async with http.post(f"{pipe.api_url}/v1/teams", json={"name": "p"}, headers=auth) as r:
            team = str((await r.json())["data"]["id"])
    for member in members:
        await _add(pipe, owner, team, member)
    return team


async def _add(pipe: Pipeline, owner: User, team: str, member: User) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{pipe.api_url}/v1/teams/{team}/members",
            json={"user_id": member.id},
            headers={"Authorization": f"Bearer {owner.token}"},
        ) as r,
    ):
        assert r.status == 201


async def _presence_frame(
    client: ChatClient, match: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        frame = await client.receive(timeout=max(0.05, deadline - loop.time()))
        if frame.get("type") == "presence" and match(frame):
            return frame


async def _status(pipe: Pipeline, viewer: User, team: str, user: User) -> str:
    listed = await rest.presence(pipe.api_url, viewer.token, team)
    return str(next(p["status"] for p in listed if p["user_id"] == user.id))


async def _until_status(
    pipe: Pipeline, viewer: User, team: str, user: User, status: str, timeout_s: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await _status(pipe, viewer, team, user) != status:
        assert loop.time() < deadline, f"{user.id} not {status} after {timeout_s} s"
        await asyncio.sleep(0.1)


async def _warm(pipe: Pipeline) -> None:
    """Readers report transitions only after reading for a whole ttl (chatcore.presence_feed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TTL_S + 10
    while not all(r.presence_feed.warm for r in pipe.relays):
        assert loop.time() < deadline
        await asyncio.sleep(0.1)


async def test_a_member_coming_and_going_is_announced_within_seconds(pipe: Pipeline) -> None:
    """Bob (on relay 2) gets alice online within 2 s of her first socket (relay 1) and offline
    within 2 s of her last one closing; GET /presence agrees; a quick reconnect flaps nothing."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    observer = await pipe.connect(bob, 1)
    await _warm(pipe)
    await _until_status(pipe, bob, team, bob, "online", TTL_S + 5)

    started = asyncio.get_running_loop().time()
    first = await pipe.connect(alice, 0)
    frame = await _presence_frame(observer, lambda f: f["user_id"] == alice.id, 2.0)
    assert frame == {
        "type": "presence",
        "channel_id": team,
        "user_id": alice.id,
        "status": "online",
    }
    assert asyncio.get_running_loop().time() - started < 2.0
    await _until_status(pipe, bob, team, alice, "online", 2.0)

    # A reconnect within the grace: nobody is told anything.
    await first.close()
    second = await pipe.connect(alice, 1)
    with pytest.raises(TimeoutError):
        await _presence_frame(observer, lambda f: f["user_id"] == alice.id, 1.5)

    closed_at = asyncio.get_running_loop().time()
    await second.close()
    frame = await _presence_frame(observer, lambda f: f["user_id"] == alice.id, 2.0)
    assert frame["status"] == "offline"
    assert asyncio.get_running_loop().time() - closed_at < 2.0
    listed = await rest.presence(pipe.api_url, bob.token, team)
    mine = next(p for p in listed if p["user_id"] == alice.id)
    assert mine["status"] == "offline"
    assert mine["last_seen"] is not None
    await observer.close()


async def _bob_watching_carol_connect(
    pipe: Pipeline,
) -> tuple[User, User, User, str, ChatClient, ChatClient]:
    """Alice's team with bob watching on relay 2; carol, not a member yet, connected on relay 1."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    observer = await pipe.connect(bob, 1)
    newcomer = await pipe.connect(carol, 0)
    await _warm(pipe)
    await _until_status(pipe, bob, team, bob, "online", TTL_S + 5)
    return alice, bob, carol, team, observer, newcomer


async def test_a_member_added_while_connected_is_announced_to_the_team(pipe: Pipeline) -> None:
    """Carol, online on relay 1, is added to a team: bob (relay 2) is told she is online there
    within 2 s, and the team's presence list agrees."""
    alice, bob, carol, team, observer, newcomer = await _bob_watching_carol_connect(pipe)

    started = asyncio.get_running_loop().time()
    await _add(pipe, alice, team, carol)
    frame = await _presence_frame(observer, lambda f: f["user_id"] == carol.id, 2.0)
    assert frame == {
        "type": "presence",
        "channel_id": team,
        "user_id": carol.id,
        "status": "online",
    }
    assert asyncio.get_running_loop().time() - started < 2.0
    await _until_status(pipe, bob, team, carol, "online", 2.0)
    await newcomer.close()
    await observer.close()


async def test_a_member_added_and_gone_at_once_is_not_left_online(pipe: Pipeline) -> None:
    """Carol, online, is added to a team and closes her socket at once (before her relay could
    announce her there): bob's frames and the team's presence list both end on offline."""
    alice, bob, carol, team, observer, newcomer = await _bob_watching_carol_connect(pipe)

    await _add(pipe, alice, team, carol)
    listed_while_open = await _status(pipe, bob, team, carol)
    await newcomer.close()

    last_frame = None
    while True:
        try:
            frame = await _presence_frame(observer, lambda f: f["user_id"] == carol.id, 3.0)
        except TimeoutError:
            break  # three quiet seconds: whatever was to be said has been
        last_frame = frame["status"]
    # A client applies frames over the list it read: a list saying online must be followed by an
    # offline frame, or her dot stays green for good.
    if listed_while_open == "online":
        assert last_frame == "offline"
    else:
        assert last_frame in (None, "offline")
    await _until_status(pipe, bob, team, carol, "offline", 1.0)
    await observer.close()


async def test_a_reader_started_late_knows_who_is_online_at_once(pipe: Pipeline) -> None:
    """A reader started while alice is online (a restarted relay or management instance) knows
    her within seconds, not a ttl, and announces nobody; her leaving is then reported."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    socket = await pipe.connect(alice, 0)
    await _warm(pipe)
    await _until_status(pipe, bob, team, alice, "online", TTL_S + 5)

    reported: list[Transition] = []
    feed = PresenceFeed(
        make_reader(pipe.settings, client_id="test-late-reader"),
        ttl_s=TTL_S,
        on_transitions=reported.extend,
    )
    started = asyncio.get_running_loop().time()
    await feed.start()
    try:
        while not feed.warm:
            assert asyncio.get_running_loop().time() - started < TTL_S / 2, "not warm in time"
            await asyncio.sleep(0.05)
        assert feed.book.online(alice.id)
        await socket.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while not any(t.user_id == alice.id for t in reported):
            assert loop.time() < deadline, "alice's leaving was not reported"
            await asyncio.sleep(0.05)
        # Earlier tests' relays may still expire here; nobody is announced as coming online.
        assert [t.status for t in reported if t.user_id == alice.id] == ["offline"]
        assert all(t.status == "offline" for t in reported)
    finally:
        await feed.stop()


async def test_users_of_a_relay_that_stops_reporting_go_offline(pipe: Pipeline) -> None:
    """A relay that dies (here: stops publishing, as a killed one would) has its users expire
    after three heartbeats; users on the other relay stay online."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    observer = await pipe.connect(bob, 1)
    await _warm(pipe)
    victim = await pipe.connect(alice, 0)
    await _presence_frame(observer, lambda f: f["user_id"] == alice.id, 2.0)
    died_at = asyncio.get_running_loop().time()
    await pipe.relays[0].presence_publisher.cancel()  # no more reports, no farewell
    frame = await _presence_frame(
        observer, lambda f: f["user_id"] == alice.id and f["status"] == "offline", TTL_S + 5
    )
    assert frame["channel_id"] == team
    assert asyncio.get_running_loop().time() - died_at < 60
    assert await _status(pipe, bob, team, bob) == "online"
    await victim.close()
    await observer.close()
