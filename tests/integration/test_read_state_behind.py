"""Read state written behind the fan-out (services/controller/write_behind.py) on the real stack:
held until the checkpoint, never lost or counted twice when the controller dies before it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from chatclient import ChatClient
from chatclient import http as rest
from chatcore.settings import Settings
from tests.integration.crash_env import crashable_pipeline
from tests.integration.pipeline_env import Pipeline, User


async def _team(pipe: Pipeline, owner: User, member: User) -> str:
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {owner.token}"}
        async with http.post(f"{pipe.api_url}/v1/teams", json={"name": "wb"}, headers=auth) as r:
            assert r.status == 201, await r.text()
            team = str((await r.json())["data"]["id"])
        async with http.post(
            f"{pipe.api_url}/v1/teams/{team}/members", json={"user_id": member.id}, headers=auth
        ) as r:
            assert r.status == 201, await r.text()
    return team


async def _unread(pipe: Pipeline, user: User, team: str) -> tuple[int, int]:
    unread = (await rest.team(pipe.api_url, user.token, team))["unread"]
    return int(unread["count"]), int(unread["mentions"])


async def _received(client: ChatClient, ids: set[str]) -> None:
    seen: set[str] = set()
    while not ids <= seen:
        frame = await client.receive(timeout=20)
        if "id" in frame:
            seen.add(str(frame["id"]))


async def test_read_state_held_at_a_kill_9_is_redone_once_from_the_log(
    settings: Settings, tmp_path: Path
) -> None:
    """DMs and mentions delivered but not yet checkpointed when the controller is killed with 9:
    after the restart Bob's unread counts are exactly those messages, not zero and not twice."""
    async with crashable_pipeline(settings, tmp_path, controller_state_flush_ms=5000) as (
        pipe,
        controller,
    ):
        alice, bob = await asyncio.gather(pipe.user(), pipe.user())
        team = await _team(pipe, alice, bob)
        ca, cb = await pipe.connect(alice, 0), await pipe.connect(bob, 1)
        await asyncio.sleep(1.0)  # Bob's "joined" read marker is checkpointed at once
        acks = [await ca.send(team, f"dm {n}", to=bob.id) for n in range(3)]
        acks += [await ca.send(team, f"hey <@{bob.id}> {n}") for n in range(2)]
        await _received(cb, {a.id for a in acks})
        # Delivered, and their effect on Bob's counts still held (the checkpoint is 5 s away).
        assert await _unread(pipe, bob, team) == (0, 0)
        await controller.kill()
        await controller.start()
        expected = (5, 5)
        for _ in range(200):
            if await _unread(pipe, bob, team) == expected:
                break
            await asyncio.sleep(0.1)
        assert await _unread(pipe, bob, team) == expected
        await asyncio.sleep(6.0)  # any further checkpoint of the records consumed again
        assert await _unread(pipe, bob, team) == expected
        for client in (ca, cb):
            await client.close()
