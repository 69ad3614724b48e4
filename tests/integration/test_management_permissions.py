"""The permission matrix over real HTTP: every endpoint x every role, and denials change nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tests.integration.management_support import (
    _UNSET,
    People,
    Roles,
    Stack,
    assert_invariants,
    make_team,
)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    request: Callable[[Roles], tuple[str, str, Any]]
    expected: dict[str, int]  # caller kind -> status


ALL = ("non-member", "user", "admin", "super_admin")


def _only(ok: int, allowed: tuple[str, ...], denied: int = 403) -> dict[str, int]:
    return {k: 404 if k == "non-member" else ok if k in allowed else denied for k in ALL}


MEMBERS = ("user", "admin", "super_admin")
ADMINS = ("admin", "super_admin")
SUPER = ("super_admin",)

CASES = [
    Case("get team", lambda r: ("GET", f"/v1/teams/{r.team_id}", _UNSET), _only(200, MEMBERS)),
    Case(
        "rename",
        lambda r: ("PATCH", f"/v1/teams/{r.team_id}", {"name": "renamed", "meta_tags": ["x"]}),
        _only(200, ADMINS),
    ),
    Case(
        "deactivate",
        lambda r: ("PATCH", f"/v1/teams/{r.team_id}", {"active": False}),
        _only(200, SUPER),
    ),
    Case(
        "add member by id",
        lambda r: ("POST", f"/v1/teams/{r.team_id}/members", {"user_id": r.outsider.id}),
        _only(201, ADMINS),
    ),
    Case(
        "add member by email",
        lambda r: ("POST", f"/v1/teams/{r.team_id}/members", {"email": r.outsider.email}),
        _only(201, ADMINS),
    ),
    Case(
        "remove user",
        lambda r: ("DELETE", f"/v1/teams/{r.team_id}/members/{r.user2.id}", _UNSET),
        _only(200, ADMINS),
    ),
    Case(
        "remove admin",
        lambda r: ("DELETE", f"/v1/teams/{r.team_id}/members/{r.admin2.id}", _UNSET),
        _only(200, SUPER),
    ),
    Case(
        "remove super_admin",
        lambda r: ("DELETE", f"/v1/teams/{r.team_id}/members/{r.super_admin.id}", _UNSET),
        {"non-member": 404, "user": 403, "admin": 403, "super_admin": 409},
    ),
    Case(
        "elect admin",
        lambda r: ("PUT", f"/v1/teams/{r.team_id}/admins/{r.user2.id}", _UNSET),
        _only(200, SUPER),
    ),
    Case(
        "dismiss admin",
        lambda r: ("DELETE", f"/v1/teams/{r.team_id}/admins/{r.admin2.id}", _UNSET),
        _only(200, SUPER),
    ),
    Case(
        "transfer super_admin",
        lambda r: ("PUT", f"/v1/teams/{r.team_id}/super_admin", {"user_id": r.user2.id}),
        _only(200, SUPER),
    ),
    Case(
        "leave",
        lambda r: ("POST", f"/v1/teams/{r.team_id}/leave", _UNSET),
        {"non-member": 404, "user": 204, "admin": 204, "super_admin": 409},
    ),
    Case(
        "history",
        lambda r: ("GET", f"/v1/teams/{r.team_id}/messages", _UNSET),
        _only(200, MEMBERS),
    ),
]


async def test_permission_matrix(stack: Stack, people: People) -> None:
    """Every endpoint x {non-member, user, admin, super_admin}; denials leave the team as is."""
    roles = await make_team(stack, people)
    failures: list[str] = []
    for case in CASES:
        for kind in ALL:
            method, path, body = case.request(roles)
            before = await stack.team_doc(roles.team_id)
            reply = await stack.call(method, path, roles.by_kind()[kind], body)
            expected = case.expected[kind]
            if reply.status != expected:
                failures.append(f"{case.name} as {kind}: {reply.status} (expected {expected})")
            after = await stack.team_doc(roles.team_id)
            if reply.status >= 400 and after != before:
                failures.append(f"{case.name} as {kind}: denied, but the team changed")
            if after is not None:
                assert_invariants(after)
            if reply.status < 400 and after != before:
                roles = await make_team(stack, people)  # a fresh team for the next caller
    assert not failures, "\n".join(failures)


async def test_every_endpoint_needs_a_token(stack: Stack, people: People) -> None:
    """Without a bearer token, or with a forged one, every team endpoint answers 401."""
    roles = await make_team(stack, people)
    forged = dataclasses.replace(roles.super_admin, token=roles.super_admin.token[:-4] + "AAAA")
    for case in [*CASES, Case("list", lambda r: ("GET", "/v1/teams", _UNSET), {})]:
        method, path, body = case.request(roles)
        for who in (None, forged):
            reply = await stack.call(method, path, who, body)
            assert reply.status == 401, (case.name, reply.body)
            assert reply.code == "unauthorized"
    assert (await stack.call("POST", "/v1/teams", None, {"name": "x"})).status == 401


async def test_strangers_cannot_tell_a_team_exists(stack: Stack, people: People) -> None:
    """A stranger gets the same 404 for a real team as for an id that was never used."""
    roles = await make_team(stack, people)
    real = await stack.call("GET", f"/v1/teams/{roles.team_id}", roles.stranger)
    never = await stack.call("GET", f"/v1/teams/{'0' * 32}", roles.stranger)
    assert real.status == never.status == 404
    assert real.body["error"]["message"] == never.body["error"]["message"]
    listed = await stack.call("GET", "/v1/teams", roles.stranger)
    assert roles.team_id not in [t["id"] for t in listed.data]


async def test_member_lifecycle_through_the_api(stack: Stack, people: People) -> None:
    """Create, list with tag and cursor, patch, add, elect, transfer, leave: an end-to-end run."""
    p = people
    created = await stack.call(
        "POST",
        "/v1/teams",
        p.outsider,
        {"name": "  Lifecycle ", "icon": "https://example.com/i.png", "meta_tags": ["life"]},
    )
    assert created.status == 201
    team = created.data
    assert team["name"] == "Lifecycle"
    assert team["active"] is True
    assert team["members"] == team["admins"] == [p.outsider.id]
    assert team["super_admin"] == p.outsider.id
    assert team["doc"].endswith("Z")
    stored = await stack.team_doc(team["id"])
    assert stored is not None
    assert set(stored) == {
        "_id", "name", "icon", "active", "meta_tags", "members", "admins", "super_admin", "doc",
        "outbox", "outbox_pending", "rev", "fence",
    }  # fmt: skip
    # The creation's ADDED event went out with the request: nothing is left pending.
    assert (stored["outbox"], stored["outbox_pending"]) == ([], False)

    tagged = await stack.call("GET", "/v1/teams?tag=life&limit=1", p.outsider)
    assert [t["id"] for t in tagged.data] == [team["id"]]

    tid = team["id"]
    added = await stack.call(
        "POST", f"/v1/teams/{tid}/members", p.outsider, {"email": p.user.email}
    )
    assert added.status == 201
    assert p.user.id in added.data["members"]
    again = await stack.call("POST", f"/v1/teams/{tid}/members", p.outsider, {"user_id": p.user.id})
    assert again.status == 409
    unknown = await stack.call(
        "POST", f"/v1/teams/{tid}/members", p.outsider, {"email": "nobody-at-all@example.com"}
    )
    assert unknown.status == 404
    ghost = await stack.call("POST", f"/v1/teams/{tid}/members", p.outsider, {"user_id": "e" * 32})
    assert ghost.status == 404

    leave_first = await stack.call("POST", f"/v1/teams/{tid}/leave", p.outsider)
    assert leave_first.status == 409
    moved = await stack.call(
        "PUT", f"/v1/teams/{tid}/super_admin", p.outsider, {"user_id": p.user.id}
    )
    assert moved.status == 200
    assert moved.data["super_admin"] == p.user.id
    assert set(moved.data["admins"]) == {p.outsider.id, p.user.id}
    assert (await stack.call("POST", f"/v1/teams/{tid}/leave", p.outsider)).status == 204
    assert (await stack.call("GET", f"/v1/teams/{tid}", p.outsider)).status == 404
    # The last member leaving closes the team for good.
    assert (await stack.call("POST", f"/v1/teams/{tid}/leave", p.user)).status == 204
    assert await stack.team_doc(tid) is None


async def test_adds_by_email_past_the_lookup_budget_are_429_not_503(stack: Stack) -> None:
    """An admin's adds by email draw from their lookups by email (30 at once): the 31st in a
    burst is a 429 with Retry-After, which says to wait, not a 503 that blames the server."""
    admin = await stack.account()
    created = await stack.call("POST", "/v1/teams", admin, {"name": "Many adds"})
    assert created.status == 201
    path = f"/v1/teams/{created.data['id']}/members"
    statuses = [
        (await stack.call("POST", path, admin, {"email": f"nobody-{i}@example.com"})).status
        for i in range(31)
    ]
    assert statuses == [404] * 30 + [429]
    refused = await stack.call("POST", path, admin, {"email": "nobody-else@example.com"})
    assert refused.status == 429
    assert refused.body["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


async def test_team_list_pages_with_cursor(stack: Stack, people: People) -> None:
    """GET /v1/teams walks all of a user's teams with next_cursor, each once, ordered by id."""
    me = await stack.account()
    made = []
    for i in range(5):
        reply = await stack.call("POST", "/v1/teams", me, {"name": f"p{i}"})
        made.append(reply.data["id"])
    seen: list[str] = []
    cursor = ""
    while True:
        reply = await stack.call("GET", f"/v1/teams?limit=2{cursor}", me)
        seen += [t["id"] for t in reply.data]
        if not reply.body["meta"]["has_more"]:
            assert reply.body["meta"]["next_cursor"] is None
            break
        cursor = f"&cursor={reply.body['meta']['next_cursor']}"
    assert seen == sorted(made)
