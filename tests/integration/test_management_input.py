"""Bad and hostile input over real HTTP: clear 4xx answers, and the stored team never changes."""

from __future__ import annotations

from typing import Any

from tests.integration.management_support import People, Stack, make_team

GT = "%7B%22%24gt%22%3A%22%22%7D"  # {"$gt":""} in a URL

HOSTILE: list[tuple[str, str, Any]] = [
    ("PATCH", "/v1/teams/{t}", {"$set": {"super_admin": "{x}"}}),
    ("PATCH", "/v1/teams/{t}", {"name": {"$gt": ""}}),
    ("PATCH", "/v1/teams/{t}", {"members": ["{x}"]}),
    ("PATCH", "/v1/teams/{t}", {"active": {"$ne": True}}),
    ("POST", "/v1/teams/{t}/members", {"user_id": {"$gt": ""}}),
    ("POST", "/v1/teams/{t}/members", {"email": {"$regex": ".*"}}),
    ("POST", "/v1/teams/{t}/members", {"$or": [{"user_id": "{x}"}]}),
    ("PUT", "/v1/teams/{t}/super_admin", {"user_id": {"$ne": ""}}),
    ("PUT", "/v1/teams/{t}/super_admin", {"user_id": "{x}", "$unset": {"admins": 1}}),
    ("GET", f"/v1/teams/{GT}", None),
    ("PATCH", f"/v1/teams/{GT}", {"name": "x"}),
    ("DELETE", "/v1/teams/{t}/members/" + GT, None),
    ("PUT", "/v1/teams/{t}/admins/%24where", None),
    ("DELETE", "/v1/teams/{t}/admins/" + GT, None),
    ("POST", f"/v1/teams/{GT}/leave", None),
    ("GET", f"/v1/teams/{GT}/messages", None),
    ("GET", "/v1/teams/{t}/messages?after=" + GT, None),
    ("GET", "/v1/teams?cursor=" + GT, None),
]


async def test_operator_shaped_input_is_rejected_and_changes_nothing(
    stack: Stack, people: People
) -> None:
    """`{"$gt": ""}` as an id, `$`-keys and operator objects as values: 422, team unchanged."""
    roles = await make_team(stack, people)
    before = await stack.team_doc(roles.team_id)
    for method, path, body in HOSTILE:
        path = path.replace("{t}", roles.team_id)
        kwargs = {} if body is None else {"body": _fill(body, roles.user.id)}
        reply = await stack.call(method, path, roles.super_admin, **kwargs)
        assert reply.status == 422, (method, path, reply.body)
        assert reply.code == "invalid"
        assert reply.body["error"]["details"]
    assert await stack.team_doc(roles.team_id) == before


async def test_bad_team_fields_get_per_field_details(stack: Stack, people: People) -> None:
    """Name, icon and tag rules are 422 with details naming each broken field."""
    reply = await stack.call(
        "POST",
        "/v1/teams",
        people.user,
        {"name": "x" * 101, "icon": "javascript:alert(1)", "meta_tags": ["Not A Slug"]},
    )
    assert reply.status == 422
    assert set(reply.body["error"]["details"]) == {"name", "icon", "meta_tags"}
    too_many = await stack.call(
        "POST", "/v1/teams", people.user, {"name": "x", "meta_tags": [f"t{i}" for i in range(21)]}
    )
    assert too_many.status == 422


async def test_unparseable_and_oversized_bodies(stack: Stack, people: People) -> None:
    """Not JSON is 400 malformed; a body over the limit is 413 too_large."""
    bad = await stack.call("POST", "/v1/teams", people.user, raw=b"{not json")
    assert (bad.status, bad.code) == (400, "malformed")
    huge = await stack.call("POST", "/v1/teams", people.user, raw=b"{" + b" " * 70_000 + b"}")
    assert (huge.status, huge.code) == (413, "too_large")


async def test_markup_is_stored_raw_and_served_as_json(stack: Stack, people: People) -> None:
    """A name with markup is kept verbatim and only ever served as JSON."""
    name = '<img src=x onerror="alert(1)">'
    reply = await stack.call("POST", "/v1/teams", people.user, {"name": name})
    assert reply.status == 201
    assert reply.data["name"] == name
    assert reply.headers["Content-Type"].startswith("application/json")


def _fill(body: Any, user_id: str) -> Any:
    """Put a real user id where a template says {x}, so only the operator shape is wrong."""
    if isinstance(body, dict):
        return {k: _fill(v, user_id) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, user_id) for v in body]
    return user_id if body == "{x}" else body
