"""``team`` frames end to end: a rename, a role change and members coming and going, made through
the management service's REST API, reach every member's socket on both relays through Kafka and
the controller, each within seconds, and a change that changes nothing sends none."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_a_member_renamed_reaches_the_sockets_of_every_team_they_share(
    pipe: Pipeline,
) -> None:
    """Bob renames himself: Alice's sockets on both relays get a 'profile' frame with his new
    name for each team they share, as does Bob's own other socket; Carol, in no team with him,
    gets none; and GET /v1/users/{id} reads the new name."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    teams = []
    for name in ("one", "two"):
        _, made = await _rest(pipe, alice, "POST", "/v1/teams", {"name": name})
        teams.append(str(made["id"]))
        added, _ = await _rest(
            pipe, alice, "POST", f"/v1/teams/{made['id']}/members", {"user_id": bob.id}
        )
        assert added == 201
    _, apart = await _rest(pipe, carol, "POST", "/v1/teams", {"name": "apart"})
    watchers = [await pipe.connect(alice, 0), await pipe.connect(alice, 1), await pipe.connect(bob)]
    outsider = await pipe.connect(carol, 1)
    async with (
        aiohttp.ClientSession() as http,
        http.patch(
            f"{pipe.auth_url}/v1/auth/me",
            json={"name": "Bob Renamed"},
            headers={"Authorization": f"Bearer {bob.token}"},
        ) as r,
    ):
        assert r.status == 200
    for client in watchers:
        told = [await _next_control(client, "profile") for _ in teams]
        assert sorted(told, key=lambda f: str(f["channel_id"])) == [
            {"type": "profile", "channel_id": t, "user_id": bob.id, "name": "Bob Renamed"}
            for t in sorted(teams)
        ]
    heard = []
    with contextlib.suppress(TimeoutError):  # the watchers' frames came: so would any of hers
        while True:
            heard.append(await outsider.receive(timeout=1.0))
    assert [f for f in heard if f.get("type") == "profile"] == []
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{pipe.auth_url}/v1/users/{bob.id}",
            headers={"Authorization": f"Bearer {alice.token}"},
        ) as r,
    ):
        assert (await r.json())["data"]["name"] == "Bob Renamed"
    assert apart["id"] not in teams
    for client in [*watchers, outsider]:
        await client.close()
