"""The message life cycle end to end (DESIGN 5b) on the real Kafka and database: edits, deletes,
reactions and threads reach exactly the sockets that may see them, and one ``changes?after=``
call brings a client that was away up to date; unread counts and mentions follow every message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatclient import ApiError, ChatClient, SyncedClient, changes_page, history
from chatclient import http as rest
from chatcore.settings import Settings
from services.controller.directory import HEAD_MAX_AGE_S
from tests.integration.crash_env import crashable_pipeline
from tests.integration.management_support import Api, load_checker
from tests.integration.pipeline_env import Pipeline, User
from tests.integration.test_attachments import picture, ready_attachment


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """HTTP calls whose every response is checked against docs/openapi.json."""
    async with aiohttp.ClientSession() as http:
        yield Api(http, load_checker())


async def _team(pipe: Pipeline, owner: User, *members: User) -> str:
    """A team created and filled through the REST API, as a user would."""
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {owner.token}"}
        async with http.post(f"{pipe.api_url}/v1/teams", json={"name": "life"}, headers=auth) as r:
            assert r.status == 201, await r.text()
            team = str((await r.json())["data"]["id"])
        for member in members:
            body = {"user_id": member.id}
            async with http.post(
                f"{pipe.api_url}/v1/teams/{team}/members", json=body, headers=auth
            ) as r:
                assert r.status == 201, await r.text()
    return team


async def _synced(pipe: Pipeline, user: User, team: str, relay: int = 0) -> SyncedClient:
    client = await pipe.synced(user, relay)
    # A member added a moment ago: the socket may have come up before the membership did.
    await client.wait_for(
        lambda: team in client.hellos[-1].get("channels", []) or team in client.timeline.channels
    )
    return client


def _updates(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["change"], f["message"]["id"]) for f in frames if f.get("type") == "update"]


async def _frames_until(
    client: ChatClient, done: Any, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done(seen):
        seen.append(await client.receive(timeout=max(0.1, deadline - loop.time())))
    return seen


async def test_edit_delete_react_reach_every_member_and_history_shows_the_result(
    pipe: Pipeline, api: Api
) -> None:
    """The author's edit reaches both members' sockets with edited_ts; another member's edit is
    403; the super_admin deletes a member's image: every socket gets the tombstone, history shows
    it and its attachment stops being downloadable; two members react at once: both, once each."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    ca, cb = await pipe.connect(alice, 0), await pipe.connect(bob, 1)
    ack = await ca.send(team, "helo")
    attachment = await ready_attachment(api, pipe, bob, team, picture(b"a picture of bob"))
    image = await cb.send(team, attachment, type="image")
    # An ack means Kafka has it; the REST calls below act on stored messages, which a client
    # knows it has once they are delivered.
    for client in (ca, cb):
        await _frames_until(client, lambda seen: {ack.id, image.id} <= {f.get("id") for f in seen})

    edited = await rest.edit(pipe.api_url, alice.token, team, ack.id, "hello")
    assert (edited["data"], edited["edited_ts"] is not None) == ("hello", True)
    with pytest.raises(ApiError) as refused:
        await rest.edit(pipe.api_url, bob.token, team, ack.id, "hijacked")
    assert refused.value.status == 403
    await rest.delete(pipe.api_url, alice.token, team, image.id)
    await asyncio.gather(
        rest.react(pipe.api_url, alice.token, team, ack.id, "🎉"),
        rest.react(pipe.api_url, bob.token, team, ack.id, "🎉"),
    )
    await rest.react(pipe.api_url, bob.token, team, ack.id, "🎉")  # again: nothing changes

    for client in (ca, cb):
        frames = await _frames_until(
            client, lambda seen: len([f for f in seen if f.get("type") == "update"]) >= 4
        )
        updates = [f for f in frames if f.get("type") == "update"]
        assert [u["change"] for u in updates] == ["edited", "deleted", "reaction", "reaction"]
        assert updates[0]["message"]["data"] == "hello"
        assert updates[1]["message"]["deleted"] is True
        assert updates[1]["message"]["data"] == ""
        final = updates[-1]["message"]["reactions"]
        assert [(r["emoji"], r["count"], sorted(r["users"])) for r in final] == [
            ("🎉", 2, sorted([alice.id, bob.id]))
        ]
    stored = {m["id"]: m for m in await history(pipe.api_url, bob.token, team)}
    assert stored[image.id]["deleted"] is True
    assert stored[ack.id]["data"] == "hello"
    reply = await api.call("GET", f"{pipe.api_url}/v1/attachments/{attachment}", token=bob.token)
    assert reply.status == 404
    await rest.react(pipe.api_url, bob.token, team, ack.id, "🎉", add=False)
    after = await rest.team(pipe.api_url, bob.token, team)
    assert after["unread"]["count"] >= 0
    frames = await _frames_until(cb, lambda seen: any(f.get("type") == "update" for f in seen))
    (last,) = [f for f in frames if f.get("type") == "update"]
    assert [(r["emoji"], r["users"]) for r in last["message"]["reactions"]] == [("🎉", [alice.id])]
    await ca.close()
    await cb.close()


async def test_a_reply_sent_the_moment_its_root_is_acked_is_taken(pipe: Pipeline) -> None:
    """Replying as soon as the root's ack arrives (before a controller may have stored the root)
    is accepted every time, on the root's relay and on another one."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    ca, cb = await pipe.connect(alice, 0), await pipe.connect(bob, 1)
    for i in range(10):
        root = await ca.send(team, f"root {i}")
        replier = ca if i % 2 == 0 else cb
        reply = await replier.send(team, f"reply {i}", thread_id=root.id)
        assert reply.seq > root.seq
    await ca.close()
    await cb.close()


async def test_a_client_that_was_away_catches_up_with_one_changes_call(pipe: Pipeline) -> None:
    """While Bob is offline: three edits, a delete, two reactions, two thread replies and the
    second's delete. One ``changes?after=<his cursor>`` returns exactly those, in order, and his
    view then equals a fresh history read."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    bob_client = await _synced(pipe, bob, team, 1)
    ca = await pipe.connect(alice, 0)
    first, second = await ca.send(team, "one"), await ca.send(team, "two")
    await bob_client.wait_for(lambda: len(bob_client.timeline.messages(team)) == 2)
    cursor = bob_client.timeline.cursor(team)
    assert cursor == second.seq
    await bob_client.close()

    for text in ("one!", "one!!", "one!!!"):
        await rest.edit(pipe.api_url, alice.token, team, first.id, text)
    await rest.delete(pipe.api_url, alice.token, team, second.id)
    await rest.react(pipe.api_url, alice.token, team, first.id, "👍")
    await rest.react(pipe.api_url, alice.token, team, first.id, ":tada:")
    reply = await ca.send(team, "in the thread", thread_id=first.id)
    gone = await ca.send(team, "a reply taken back", thread_id=first.id)
    await rest.delete(pipe.api_url, alice.token, team, gone.id)

    async def caught_up() -> list[dict[str, Any]]:
        entries, _meta = await changes_page(pipe.api_url, bob.token, team, after=cursor)
        return entries if len(entries) >= 12 else []

    entries: list[dict[str, Any]] = []
    for _ in range(100):  # the last change may still be on its way to the database
        entries = await caught_up()
        if entries:
            break
        await asyncio.sleep(0.1)
    assert [(e["change"], e["message"]["id"]) for e in entries] == [
        ("edited", first.id),
        ("edited", first.id),
        ("edited", first.id),
        ("deleted", second.id),
        ("reaction", first.id),
        ("reaction", first.id),
        ("created", reply.id),
        ("thread", first.id),
        ("created", gone.id),
        ("thread", first.id),
        ("deleted", gone.id),
        ("thread", first.id),
    ]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    # The delete of a reply takes it off its root's count, at the delete's seq.
    assert entries[-1]["seq"] == entries[-2]["seq"]
    assert [e["message"].get("thread", {}).get("replies") for e in entries[7::2]] == [1, 2, 1]
    back = SyncedClient(pipe.ws_url(1), pipe.api_url, bob.token)
    back.timeline = bob_client.timeline  # the same client, reconnecting with its cursor
    await back.start()
    try:
        fresh = await history(pipe.api_url, bob.token, team)
        await back.wait_for(lambda: back.timeline.messages(team) == fresh)
        root = back.timeline.message(team, first.id)
        assert root is not None
        assert (root["data"], root["thread"]["replies"]) == ("one!!!", 1)
        assert [r["emoji"] for r in root["reactions"]] == ["👍", ":tada:"]
    finally:
        await back.close()
        await ca.close()


async def test_a_dm_s_changes_reach_only_its_two_people(pipe: Pipeline) -> None:
    """Edits, reactions and the delete of a DM never reach a third member's socket or feed."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob, carol)
    ca, cb, cc = [await pipe.connect(u, i % 2) for i, u in enumerate((alice, bob, carol))]
    dm = await ca.send(team, "psst", to=bob.id)
    await _frames_until(ca, lambda seen: any(f.get("id") == dm.id for f in seen))
    await rest.edit(pipe.api_url, alice.token, team, dm.id, "psst!")
    await rest.react(pipe.api_url, bob.token, team, dm.id, "🤫")
    await rest.delete(pipe.api_url, alice.token, team, dm.id)
    marker = await ca.send(team, "for everyone")
    seen_by_bob = await _frames_until(cb, lambda seen: any(f.get("id") == marker.id for f in seen))
    assert _updates(seen_by_bob) == [("edited", dm.id), ("reaction", dm.id), ("deleted", dm.id)]
    seen_by_carol = await _frames_until(
        cc, lambda seen: any(f.get("id") == marker.id for f in seen)
    )
    assert [
        f for f in seen_by_carol if dm.id in (f.get("id"), f.get("message", {}).get("id"))
    ] == []
    feed, _meta = await changes_page(pipe.api_url, carol.token, team, after=0)
    assert dm.id not in {e["message"]["id"] for e in feed}
    with pytest.raises(ApiError) as hidden:
        await rest.react(pipe.api_url, carol.token, team, dm.id, "👀")
    assert hidden.value.status == 404
    for client in (ca, cb, cc):
        await client.close()


async def test_unread_counts_mentions_and_dms_across_teams_and_read_frames(
    pipe: Pipeline,
) -> None:
    """Unread and mentions per team for Bob across three teams, mentions recounted when a text
    is edited; marking read on one socket sends ``read`` to his other socket and zeroes the
    team; counts survive a controller restart."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    teams = [await _team(pipe, alice, bob) for _ in range(3)]
    ca = await pipe.connect(alice, 0)
    await ca.send(teams[0], "hi all")
    named = await ca.send(teams[0], f"hey <@{bob.id}>")
    await ca.send(teams[1], "just for you", to=bob.id)
    last = await ca.send(teams[1], "and everyone")

    async def counts() -> dict[str, tuple[int, int]]:
        found = {}
        for team in teams:
            unread = (await rest.team(pipe.api_url, bob.token, team))["unread"]
            found[team] = (unread["count"], unread["mentions"])
        return found

    async def settles_at(expected: dict[str, tuple[int, int]]) -> None:
        for _ in range(100):
            if await counts() == expected:
                break
            await asyncio.sleep(0.1)
        assert await counts() == expected

    expected = {teams[0]: (2, 1), teams[1]: (2, 1), teams[2]: (0, 0)}
    await settles_at(expected)
    # Edited to name nobody: still unread, no longer a mention; named again: a mention again.
    await rest.edit(pipe.api_url, alice.token, teams[0], named.id, "hey everyone")
    await settles_at({**expected, teams[0]: (2, 0)})
    await rest.edit(pipe.api_url, alice.token, teams[0], named.id, f"hey <@{bob.id}>, again")
    await settles_at(expected)

    # A hello may reuse a channel head read this long ago (Alice's own hello read these).
    await asyncio.sleep(HEAD_MAX_AGE_S)
    phone, laptop = await pipe.connect(bob, 0), await pipe.connect(bob, 1)
    assert phone.hello["unread"][teams[0]] == {"count": 2, "mentions": 1}
    await rest.mark_read(pipe.api_url, bob.token, teams[1], last.seq)
    for socket in (phone, laptop):
        frames = await _frames_until(
            socket, lambda seen: any(f.get("type") == "read" for f in seen)
        )
        assert [f for f in frames if f.get("type") == "read"] == [
            {"type": "read", "channel_id": teams[1], "seq": last.seq}
        ]
    expected[teams[1]] = (0, 0)
    await settles_at(expected)

    await pipe.controller.stop()
    assert await counts() == expected  # stored, not held by the controller
    for client in (ca, phone, laptop):
        await client.close()


async def test_an_unread_dm_stays_unread_when_its_reader_posts_to_the_team(
    pipe: Pipeline,
) -> None:
    """Carol DMs Alice; Alice, who has not opened it, posts to the team: the DM is still unread
    (and a mention), her own message is not. Answering Carol reads it. Answering Bob does not
    read a newer DM from Carol (the read position is one seq for the team), nor Bob's then."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob, carol)
    cc, cb = await pipe.connect(carol, 0), await pipe.connect(bob, 1)
    ca = await pipe.connect(alice, 0)

    async def settles_at(expected: tuple[int, int]) -> None:
        found: tuple[int, int] = (-1, -1)
        for _ in range(100):
            unread = (await rest.team(pipe.api_url, alice.token, team))["unread"]
            found = (unread["count"], unread["mentions"])
            if found == expected:
                return
            await asyncio.sleep(0.1)
        assert found == expected

    await cc.send(team, "the door code is 4711", to=alice.id)
    await ca.send(team, "morning all")
    await settles_at((1, 1))
    await ca.send(team, "thanks", to=carol.id)
    await settles_at((0, 0))
    await cc.send(team, "and the alarm is 1234", to=alice.id)
    await cb.send(team, "ping", to=alice.id)
    await ca.send(team, "pong", to=bob.id)
    await settles_at((2, 2))
    for client in (ca, cb, cc):
        await client.close()


async def test_a_read_mark_past_the_end_does_not_tell_where_others_dms_are(
    pipe: Pipeline,
) -> None:
    """Bob marks a seq far past the end read after Alice's team message and her DMs to Carol:
    his position is Alice's team message, not her last DM, and nothing is unread."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob, carol)
    ca = await _synced(pipe, alice, team)
    seen = await ca.send(team, "for everyone")
    dms = [await ca.send(team, f"for Carol {n}", to=carol.id) for n in range(3)]
    assert dms[-1].seq > seen.seq
    await rest.mark_read(pipe.api_url, bob.token, team, 10**15)
    for _ in range(100):  # the position is applied by the channel's controller, after the 204
        unread = (await rest.team(pipe.api_url, bob.token, team))["unread"]
        if unread["last_read_seq"] != -1:
            break
        await asyncio.sleep(0.05)
    assert unread == {"count": 0, "mentions": 0, "last_read_seq": seen.seq}
    await ca.close()


async def test_messages_marked_read_as_they_arrive_stay_read(pipe: Pipeline) -> None:
    """Bob marks each message read the moment his socket gets it, before the controller's next
    checkpoint has saved the channel's head: his position is that message, nothing is unread."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await _team(pipe, alice, bob)
    ca = await pipe.connect(alice, 0)
    cb = await pipe.connect(bob, 1)
    for _ in range(50):  # a member added a moment ago: the index may not list them yet
        if team in cb.hello.get("channels", []):
            break
        await cb.close()
        await asyncio.sleep(0.1)
        cb = await pipe.connect(bob, 1)
    assert team in cb.hello.get("channels", [])
    for n in range(3):
        sent = await ca.send(team, f"read me {n}")
        await _frames_until(cb, lambda seen, i=sent.id: any(f.get("id") == i for f in seen))
        await rest.mark_read(pipe.api_url, bob.token, team, sent.seq)
        frames = await _frames_until(cb, lambda seen: any(f.get("type") == "read" for f in seen))
        assert [f["seq"] for f in frames if f.get("type") == "read"] == [sent.seq]
    unread = (await rest.team(pipe.api_url, bob.token, team))["unread"]
    assert unread == {"count": 0, "mentions": 0, "last_read_seq": sent.seq}
    for client in (ca, cb):
        await client.close()


async def test_changes_survive_a_controller_killed_with_9_and_apply_once(
    settings: Settings, tmp_path: Path
) -> None:
    """Edits and reactions flow while the controller is killed with SIGKILL and restarted: the
    final state is every acknowledged change applied once, and a synced client shows it."""
    async with crashable_pipeline(settings, tmp_path) as (crash_pipe, controller):
        alice, bob = await asyncio.gather(crash_pipe.user(), crash_pipe.user())
        team = await _team(crash_pipe, alice, bob)
        ca = await crash_pipe.connect(alice, 0)
        sent = [await ca.send(team, f"m{i}") for i in range(5)]
        await _frames_until(ca, lambda seen: len([f for f in seen if f.get("seq")]) >= 5)
        watcher = await _synced(crash_pipe, bob, team, 1)
        emojis = ["👍", "🎉", ":a:", ":b:"]
        acked_edits: dict[str, str] = {}
        acked_reactions: set[tuple[str, str, str]] = set()

        async def churn(rounds: int) -> None:
            for n in range(rounds):
                target = sent[n % len(sent)]
                text = f"{target.id}-v{n}"
                try:
                    await rest.edit(crash_pipe.api_url, alice.token, team, target.id, text)
                    acked_edits[target.id] = text
                except ApiError:
                    pass  # not acknowledged: may or may not have landed
                for who in (alice, bob):
                    emoji = emojis[(n + len(who.id)) % len(emojis)]
                    try:
                        await rest.react(crash_pipe.api_url, who.token, team, target.id, emoji)
                        acked_reactions.add((target.id, emoji, who.id))
                    except ApiError:
                        pass

        churning = asyncio.create_task(churn(30))
        await asyncio.sleep(0.5)  # let some changes land before the kill
        await controller.kill()
        await controller.start()
        await churning
        await churn(5)  # and some after

        def shown() -> dict[str, dict[str, Any]]:
            return {m["id"]: dict(m) for m in watcher.timeline.messages(team)}

        def settled() -> bool:
            view = shown()
            if any(view.get(i, {}).get("data") != text for i, text in acked_edits.items()):
                return False
            have = {
                (i, r["emoji"], u)
                for i, m in view.items()
                for r in m.get("reactions", [])
                for u in r["users"]
            }
            return acked_reactions <= have

        await watcher.wait_for(settled, 60)
        stored = {m["id"]: m for m in await history(crash_pipe.api_url, bob.token, team)}
        for message_id, text in acked_edits.items():
            assert stored[message_id]["data"] == text
        for message in stored.values():
            for reaction in message["reactions"]:
                users = reaction["users"]
                assert len(users) == len(set(users)) == reaction["count"]  # each once
        assert shown() == {i: dict(m) for i, m in stored.items()}
        await watcher.close()
        await ca.close()
