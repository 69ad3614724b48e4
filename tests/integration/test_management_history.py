"""History over real HTTP and the real database: visibility of DMs, cursors, no gaps, no repeats."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.controller.migrate import bucket_older_messages
from tests.integration.management_support import (
    Account,
    People,
    Roles,
    Stack,
    make_team,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
async def channel(stack: Stack, people: People) -> tuple[Roles, list[dict[str, Any]]]:
    """A team whose channel holds 240 messages (seqs with gaps, about a third DMs), plus noise in
    another channel; returns the team and the stored messages in seq order."""
    roles = await make_team(stack, people)
    rng = random.Random(7)
    talkers = [roles.super_admin, roles.admin, roles.user, roles.user2]
    docs: list[dict[str, Any]] = []
    seq = 0
    for i in range(240):
        seq += rng.randint(1, 4)  # offsets are shared with other channels of the partition
        sender = rng.choice(talkers)
        to = "*" if rng.random() < 0.65 else rng.choice([t for t in talkers if t != sender]).id
        docs.append(
            {
                "id": uuid.uuid4().hex,
                "channel_id": roles.team_id,
                "seq": seq,
                "to": to,
                "type": "text",
                "data": f"message {i} <b>raw</b>",
                "from": sender.id,
                "ts": T0 + timedelta(milliseconds=250 * i),
            }
        )
    noise = [{**d, "id": uuid.uuid4().hex, "channel_id": "f" * 32, "to": "*"} for d in docs[:50]]
    channels = [roles.team_id, "f" * 32]
    await stack.db["messages"].delete_many({"channel_id": {"$in": channels}})
    await stack.db["channels"].delete_many({"_id": {"$in": channels}})
    # Shuffled on purpose: the order of storage must not matter. Stored without a bucket, as
    # before buckets existed; the controller's migration then files them in buckets of 16, so
    # the pages below cross buckets and walk migrated ones.
    await stack.db["messages"].insert_many(rng.sample(docs, len(docs)) + noise)
    await bucket_older_messages(stack.db, force=True, size=16)
    for d in docs:
        d.pop("_id", None)
    return roles, docs


def _visible(docs: list[dict[str, Any]], who: Account) -> list[int]:
    return [d["seq"] for d in docs if d["to"] == "*" or who.id in (d["to"], d["from"])]


async def _forward(stack: Stack, roles: Roles, who: Account, limit: int) -> list[int]:
    seqs: list[int] = []
    cursor = 0
    while True:
        reply = await stack.call(
            "GET", f"/v1/teams/{roles.team_id}/messages?after={cursor}&limit={limit}", who
        )
        assert reply.status == 200, reply.body
        page = [m["seq"] for m in reply.data]
        assert page == sorted(page)
        assert len(page) <= limit
        seqs += page
        meta = reply.body["meta"]
        assert meta["direction"] == "forward"
        assert meta["count"] == len(page)
        cursor = meta["next_cursor"]
        if not meta["has_more"]:
            return seqs


async def _backward(stack: Stack, roles: Roles, who: Account, limit: int) -> list[int]:
    seqs: list[int] = []
    query = f"limit={limit}"
    while True:
        reply = await stack.call("GET", f"/v1/teams/{roles.team_id}/messages?{query}", who)
        assert reply.status == 200, reply.body
        page = [m["seq"] for m in reply.data]
        assert page == sorted(page)
        assert len(page) <= limit
        seqs = page + seqs
        meta = reply.body["meta"]
        assert meta["direction"] == "backward"
        if not meta["has_more"]:
            return seqs
        query = f"before={meta['next_cursor']}&limit={limit}"


@pytest.mark.parametrize("limit", [7, 50, 200])
async def test_each_member_walks_exactly_their_visible_set(
    stack: Stack, channel: tuple[Roles, list[dict[str, Any]]], limit: int
) -> None:
    """Both walks give each member team messages and own DMs once each, never others' DMs."""
    roles, docs = channel
    for who in (roles.super_admin, roles.admin, roles.user, roles.user2):
        expected = _visible(docs, who)
        assert len(expected) < len(docs)  # DMs between others exist and must stay hidden
        assert await _forward(stack, roles, who, limit) == expected
        assert await _backward(stack, roles, who, limit) == expected


async def test_messages_have_exactly_the_contract_shape(
    stack: Stack, channel: tuple[Roles, list[dict[str, Any]]]
) -> None:
    """Objects are {id, seq, channel_id, to, type, data, from, ts} plus the life cycle's fields
    (DESIGN 5b) at their defaults for a message never changed; ts ISO-8601 UTC with ms."""
    roles, docs = channel
    reply = await stack.call(
        "GET", f"/v1/teams/{roles.team_id}/messages?after=0&limit=3", roles.user
    )
    first = next(d for d in docs if d["seq"] == reply.data[0]["seq"])
    assert reply.data[0] == {
        "id": first["id"],
        "seq": first["seq"],
        "channel_id": roles.team_id,
        "to": first["to"],
        "type": "text",
        "data": first["data"],
        "from": first["from"],
        "ts": first["ts"].strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{first['ts'].microsecond // 1000:03d}Z",
        "thread_id": None,
        "edited_ts": None,
        "deleted": False,
        "reactions": [],
    }


async def test_resume_and_edges(stack: Stack, channel: tuple[Roles, list[dict[str, Any]]]) -> None:
    """after=<last seq> is empty with the cursor kept; latest page; bad cursors are 422."""
    roles, docs = channel
    last = docs[-1]["seq"]
    base = f"/v1/teams/{roles.team_id}/messages"
    empty = await stack.call("GET", f"{base}?after={last}", roles.user)
    assert empty.data == []
    assert empty.body["meta"]["next_cursor"] == last
    assert empty.body["meta"]["has_more"] is False
    latest = await stack.call("GET", f"{base}?limit=5", roles.super_admin)
    assert [m["seq"] for m in latest.data] == _visible(docs, roles.super_admin)[-5:]
    assert latest.body["meta"]["has_more"] is True
    for query in (
        "before=1&after=2",
        "after=-2",
        "before=-1",
        "limit=0",
        "limit=201",
        "after=%24gt",
        "after=1e3",
    ):
        reply = await stack.call("GET", f"{base}?{query}", roles.user)
        assert reply.status == 422, query


async def test_only_current_members_read_history(
    stack: Stack, channel: tuple[Roles, list[dict[str, Any]]], people: People
) -> None:
    """Strangers get 404; a member removed from the team gets 404 from then on."""
    roles, _docs = channel
    base = f"/v1/teams/{roles.team_id}/messages"
    assert (await stack.call("GET", base, roles.stranger)).status == 404
    other = await make_team(stack, people)
    path = f"/v1/teams/{other.team_id}"
    assert (await stack.call("GET", f"{path}/messages", other.user2)).status == 200
    removed = await stack.call("DELETE", f"{path}/members/{other.user2.id}", other.admin)
    assert removed.status == 200
    assert (await stack.call("GET", f"{path}/messages", other.user2)).status == 404
