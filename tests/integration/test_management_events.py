"""Membership changes publish the matching MembershipEvent on chat.events.v1, and nothing else."""

from __future__ import annotations

import time
import uuid

from chatcore.proto.chat.v1 import chat_pb2
from tests.integration.management_support import (
    EventTap,
    People,
    Stack,
    make_team,
)


async def test_membership_changes_publish_matching_events(stack: Stack, people: People) -> None:
    """Each membership change yields its event in order; role changes and denials yield none."""
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
            ("PUT", f"/v1/teams/{t}/admins/{p.admin.id}", p.super_admin, None),  # no event
            ("POST", f"/v1/teams/{t}/members", p.admin, {"user_id": p.user2.id}),
            ("DELETE", f"/v1/teams/{t}/members/{p.user2.id}", p.admin, None),
            ("DELETE", f"/v1/teams/{t}/members/{p.admin.id}", p.user, None),  # denied: no event
            ("PUT", f"/v1/teams/{t}/super_admin", p.super_admin, {"user_id": p.admin.id}),
            ("POST", f"/v1/teams/{t}/leave", p.user, None),
            ("PATCH", f"/v1/teams/{t}", p.admin, {"active": False}),  # the new super_admin
            ("PATCH", f"/v1/teams/{t}", p.admin, {"name": "renamed"}),  # no event
            ("PATCH", f"/v1/teams/{t}", p.admin, {"active": True}),
        ]
        statuses = []
        for method, path, who, body in steps:
            kwargs = {} if body is None else {"body": body}
            reply = await stack.call(method, path, who, headers=hdr, **kwargs)
            statuses.append(reply.status)
        assert statuses == [201, 201, 200, 201, 200, 403, 200, 204, 200, 200, 200]
        events = await tap.events(t, 8)

    c = chat_pb2
    assert [(e.change, e.user_id, e.actor) for e in events] == [
        (c.MEMBERSHIP_CHANGE_ADDED, p.super_admin.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ADDED, p.admin.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ADDED, p.user.id, p.super_admin.id),
        (c.MEMBERSHIP_CHANGE_ADDED, p.user2.id, p.admin.id),
        (c.MEMBERSHIP_CHANGE_REMOVED, p.user2.id, p.admin.id),
        (c.MEMBERSHIP_CHANGE_REMOVED, p.user.id, p.user.id),
        (c.MEMBERSHIP_CHANGE_DEACTIVATED, "", p.admin.id),
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
