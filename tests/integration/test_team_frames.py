"""``team`` frames end to end: a rename, a role change and members coming and going, made through
the management service's REST API, reach every member's socket on both relays through Kafka and
the controller, each within seconds, and a change that changes nothing sends none."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from chatclient import ChatClient
from tests.integration.pipeline_env import Pipeline, User

# The contract gives presence 2 s; team news travels the same path (outbox, Kafka, controller).
WITHIN_S = 5.0


async def _rest(
    pipe: Pipeline, user: User, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """The status and the envelope's ``data`` (None for an empty answer)."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{pipe.api_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {user.token}"},
        ) as r,
    ):
        return r.status, (await r.json())["data"] if r.status != 204 else None


async def _next_control(client: ChatClient, *types: str) -> dict[str, Any]:
    """The next frame of one of these types (presence and the like are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    while True:
        frame = await client.receive(timeout=max(0.05, deadline - loop.time()))
        if frame.get("type") in types:
            return frame


async def test_team_changes_reach_every_member_socket_and_no_change_sends_nothing(
    pipe: Pipeline,
) -> None:
    """Alice renames the team, makes Bob an admin, adds and removes Carol: Bob's sockets on
    both relays and Alice's own get a 'team' frame for each, in order; Carol gets 'added' and
    'removed' instead; a PATCH that repeats the name and a second election send nothing."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    created, made = await _rest(pipe, alice, "POST", "/v1/teams", {"name": "before"})
    assert created == 201
    team = str(made["id"])
    added, _ = await _rest(pipe, alice, "POST", f"/v1/teams/{team}/members", {"user_id": bob.id})
    assert added == 201
    watchers = [await pipe.connect(bob, 0), await pipe.connect(bob, 1), await pipe.connect(alice)]
    newcomer = await pipe.connect(carol, 1)

    def frame(change: str) -> dict[str, Any]:
        return {"type": "team", "channel_id": team, "change": change}

    path = f"/v1/teams/{team}"
    steps = [
        ("PATCH", path, {"name": "before"}, None),  # as it is: nothing to tell
        ("PATCH", path, {"name": "after"}, "settings"),
        ("PUT", f"{path}/admins/{bob.id}", None, "roles"),
        ("PUT", f"{path}/admins/{bob.id}", None, None),  # already an admin
        ("POST", f"{path}/members", {"user_id": carol.id}, "members"),
        ("DELETE", f"{path}/members/{carol.id}", None, "members"),
    ]
    for method, where, body, change in steps:
        status, _ = await _rest(pipe, alice, method, where, body)
        assert status in (200, 201, 204)
        if change is None:
            continue
        started = asyncio.get_running_loop().time()
        for client in watchers:
            assert await _next_control(client, "team", "membership") == frame(change)
        assert asyncio.get_running_loop().time() - started < WITHIN_S
        if method in ("POST", "DELETE"):
            # Carol hears of her own membership, and of nothing else: the next step removes
            # her only once she has the channel (a removal racing her grant would cancel it).
            told = await _next_control(newcomer, "team", "membership")
            assert told["event"] == ("added" if method == "POST" else "removed")
    _, seen = await _rest(pipe, bob, "GET", path)
    assert (seen["name"], bob.id in seen["admins"]) == ("after", True)
    for client in [*watchers, newcomer]:
        await client.close()
