"""Membership changes publish the matching MembershipEvent on chat.events.v1, and nothing else;
with Kafka unreachable the event waits in the team's outbox and goes out once Kafka is back."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaConnectionError

from chatcore.proto.chat.v1 import chat_pb2
from services.management.events import EventSender
from services.management.server import start as start_management
from tests.integration.management_support import (
    TEST_DB,
    EventTap,
    People,
    Stack,
    make_team,
)


async def test_membership_changes_publish_matching_events(stack: Stack, people: People) -> None:
    """Each change yields its event in order (role changes and renames too); denials and
    changes that change nothing yield none."""
    p = people
    started_ms = int(time.time() * 1000)
    async with EventTap.open(stack.settings) as tap:
        cid = f"corr-{uuid.uuid4().hex[:12]}"
        hdr = {"X-Correlation-ID": cid}
        created = await stack.call("POST", "/v1/teams", p.super_admin, {"name": "ev"}, headers=hdr)
        t = created.data["id"]
        steps = [
            ("POST", f"/v1/teams/{t}/members", p.super_admin, {"user_id": p.admin.id}),
            ("POST", f"/v1/teams/{t}/members", p.super_admin, {"email": p.user.email}),
            ("PUT", f"/v1/teams/{t}/admins/{p.admin.id}", p.super_admin, None),
            ("PUT", f"/v1/teams/{t}/admins/{p.admin.id}", p.super_admin, None),  # no change
            ("POST", f"/v1/teams/{t}/members", p.admin, {"user_id": p.user2.id}),
            ("DELETE", f"/v1/teams/{t}/members/{p.user2.id}", p.admin, None),
            ("DELETE", f"/v1/teams/{t}/members/{p.admin.id}", p.user, None),  # denied: no event
            ("PUT", f"/v1/teams/{t}/super_admin", p.super_admin, {"user_id": p.admin.id}),
            ("POST", f"/v1/teams/{t}/leave", p.user, None),
            ("PATCH", f"/v1/teams/{t}", p.admin, {"active": False}),  # the new super_admin
            ("PATCH", f"/v1/teams/{t}", p.admin, {"name": "renamed"}),
            ("PATCH", f"/v1/teams/{t}", p.admin, {"name": "renamed"}),  # no change
            ("PATCH", f"/v1/teams/{t}", p.admin, {"active": True}),
        ]
        statuses = []
        for method, path, who, body in steps:
            kwargs = {} if body is None else {"body": body}
            reply = await stack.call(method, path, who, headers=hdr, **kwargs)
            statuses.append(reply.status)
        assert statuses == [201, 201, 200, 200, 201, 200, 403, 200, 204, 200, 200, 200, 200]
        events = await tap.events(t, 11)

    c = chat_pb2
    assert [(e.change, e.user_id, e.actor) for e in events] == [
        (c.MEMBERSHIP_CHANGE_ADDED, p.super_admin.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ADDED, p.admin.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ADDED, p.user.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ROLES, p.admin.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ADDED, p.user2.id, p.admin.id),
        (c.MEMBERSHIP_CHANGE_REMOVED, p.user2.id, p.admin.id),
        (c.MEMBERSHIP_CHANGE_ROLES, p.admin.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_REMOVED, p.user.id, p.user.id),
        (c.MEMBERSHIP_CHANGE_DEACTIVATED, "", p.admin.id),
        (c.MEMBERSHIP_CHANGE_SETTINGS, "", p.admin.id),
        (c.MEMBERSHIP_CHANGE_ACTIVATED, "", p.admin.id),
    ]
    assert {e.correlation_id for e in events} == {cid}
    assert all(started_ms <= e.ts_ms <= int(time.time() * 1000) for e in events)


async def test_request_id_is_the_default_correlation_id(stack: Stack, people: People) -> None:
    """Without X-Correlation-ID, the event carries the request's X-Request-ID."""
    r = await make_team(stack, people)
    async with EventTap.open(stack.settings) as tap:
        reply = await stack.call(
            "POST", f"/v1/teams/{r.team_id}/members", r.admin, {"user_id": r.outsider.id}
        )
        assert reply.status == 201
        (event,) = await tap.events(r.team_id, 1)
    assert event.correlation_id == reply.headers["X-Request-ID"]
    assert (event.change, event.user_id) == (chat_pb2.MEMBERSHIP_CHANGE_ADDED, r.outsider.id)


class Unreachable:
    """The management service's producer as seen through a broken network: sends fail."""

    def __init__(self, inner: EventSender) -> None:
        self._inner = inner
        self.down = False

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        if self.down:
            raise KafkaConnectionError("broker unreachable (test)")
        return await self._inner.send_and_wait(topic, value=value, key=key, headers=headers)


async def _until(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_removal_while_kafka_is_unreachable_is_published_once_it_is_back(
    stack: Stack, people: People
) -> None:
    """Kafka down: the removal succeeds and its event waits in the team document; back up, the
    REMOVED event reaches chat.events.v1 and the outbox is empty."""
    p = people
    link: list[Unreachable] = []

    def wrap(producer: EventSender) -> EventSender:
        link.append(Unreachable(producer))
        return link[0]

    # Its own database: the module's management service would otherwise publish the pending
    # event itself (its retry loop watches every team of its database).
    offline_db = f"{TEST_DB}_offline"
    settings = dataclasses.replace(stack.settings, mongo_db=offline_db)
    teams = stack.db.client[offline_db]["teams"]
    # Management checks each caller's account in its own database, as in production where the
    # services share one: these callers must exist there too.
    callers = [p.super_admin.id, p.user.id]
    users = await stack.db["users"].find({"_id": {"$in": callers}}).to_list()
    await stack.db.client[offline_db]["users"].insert_many(users)
    service = await start_management(settings, port=0, wrap_sender=wrap)
    base = f"http://127.0.0.1:{service.port}"
    try:
        async with EventTap.open(stack.settings) as tap:
            created = await stack.api.call(
                "POST", f"{base}/v1/teams", token=p.super_admin.token, body={"name": "offline"}
            )
            t = created.data["id"]
            added = await stack.api.call(
                "POST",
                f"{base}/v1/teams/{t}/members",
                token=p.super_admin.token,
                body={"user_id": p.user.id},
            )
            assert added.status == 201

            link[0].down = True
            removed = await stack.api.call(
                "DELETE", f"{base}/v1/teams/{t}/members/{p.user.id}", token=p.super_admin.token
            )
            assert removed.status == 200, removed.body
            assert p.user.id not in removed.data["members"]
            doc = await teams.find_one({"_id": t})
            assert doc is not None
            assert doc["outbox_pending"] is True
            assert [(e["user_id"], e["change"]) for e in doc["outbox"]] == [(p.user.id, "removed")]
            before = await tap.events(t, 2)
            assert [e.change for e in before] == [chat_pb2.MEMBERSHIP_CHANGE_ADDED] * 2

            link[0].down = False  # the retry loop publishes without any further request

            async def drained() -> bool:
                stored = await teams.find_one({"_id": t})
                return stored is not None and stored["outbox"] == []

            await _until(drained)
            events = await tap.events(t, 3)
        doc = await teams.find_one({"_id": t})
        assert doc is not None
        assert doc["outbox_pending"] is False
        assert (events[-1].change, events[-1].user_id, events[-1].actor) == (
            chat_pb2.MEMBERSHIP_CHANGE_REMOVED,
            p.user.id,
            p.super_admin.id,
        )
    finally:
        await service.stop()
        await stack.db.client.drop_database(offline_db)
