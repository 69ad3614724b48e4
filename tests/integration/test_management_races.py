"""Concurrent role changes against the real database never break the team invariants."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tests.integration.management_support import (
    _UNSET,
    People,
    Reply,
    Stack,
    assert_invariants,
    make_team,
)

ROUNDS = 8


async def _doc(stack: Stack, team_id: str) -> dict[str, Any]:
    doc = await stack.team_doc(team_id)
    assert doc is not None
    assert_invariants(doc)
    return doc


async def test_transfer_races_removal_of_the_new_super_admin(stack: Stack, people: People) -> None:
    """super_admin transfers to an admin while removing that admin: exactly one wins."""
    for _ in range(ROUNDS):
        r = await make_team(stack, people)
        transfer, remove = await asyncio.gather(
            stack.call(
                "PUT", f"/v1/teams/{r.team_id}/super_admin", r.super_admin, {"user_id": r.admin.id}
            ),
            stack.call("DELETE", f"/v1/teams/{r.team_id}/members/{r.admin.id}", r.super_admin),
        )
        doc = await _doc(stack, r.team_id)
        if transfer.status == 200:
            # The removal came second: the caller was no longer super_admin and the target is.
            assert remove.status == 403
            assert doc["super_admin"] == r.admin.id
            assert r.admin.id in doc["members"]
        else:
            assert (transfer.status, remove.status) == (404, 200)
            assert doc["super_admin"] == r.super_admin.id
            assert r.admin.id not in doc["members"]


async def test_admin_removal_races_dismissal_of_that_admin(stack: Stack, people: People) -> None:
    """An admin removes a user while the super_admin dismisses the admin: never a half state."""
    for _ in range(ROUNDS):
        r = await make_team(stack, people)
        remove, dismiss = await asyncio.gather(
            stack.call("DELETE", f"/v1/teams/{r.team_id}/members/{r.user.id}", r.admin),
            stack.call("DELETE", f"/v1/teams/{r.team_id}/admins/{r.admin.id}", r.super_admin),
        )
        doc = await _doc(stack, r.team_id)
        assert dismiss.status == 200
        assert r.admin.id not in doc["admins"]
        assert remove.status in (200, 403)
        assert (r.user.id in doc["members"]) == (remove.status == 403)


async def test_two_transfers_at_once_have_one_winner(stack: Stack, people: People) -> None:
    """Two concurrent transfers by the super_admin: one lands, the other is refused."""
    for _ in range(ROUNDS):
        r = await make_team(stack, people)
        replies = await asyncio.gather(
            *(
                stack.call(
                    "PUT", f"/v1/teams/{r.team_id}/super_admin", r.super_admin, {"user_id": u.id}
                )
                for u in (r.admin, r.user, r.user2)
            )
        )
        statuses = sorted(reply.status for reply in replies)
        assert statuses == [200, 403, 403], statuses
        winner = next(reply for reply in replies if reply.status == 200)
        doc = await _doc(stack, r.team_id)
        assert doc["super_admin"] == winner.data["super_admin"]


async def test_same_user_added_twice_at_once(stack: Stack, people: People) -> None:
    """Two admins add the same user concurrently: one 201, one 409, one membership."""
    for _ in range(ROUNDS):
        r = await make_team(stack, people)
        replies = await asyncio.gather(
            *(
                stack.call("POST", f"/v1/teams/{r.team_id}/members", a, {"user_id": r.outsider.id})
                for a in (r.admin, r.admin2)
            )
        )
        assert sorted(x.status for x in replies) == [201, 409]
        doc = await _doc(stack, r.team_id)
        assert doc["members"].count(r.outsider.id) == 1


async def test_leave_races_a_transfer_to_the_leaver(stack: Stack, people: People) -> None:
    """An admin leaves while being made super_admin: the team always keeps a member super_admin."""
    for _ in range(ROUNDS):
        r = await make_team(stack, people)
        leave, transfer = await asyncio.gather(
            stack.call("POST", f"/v1/teams/{r.team_id}/leave", r.admin),
            stack.call(
                "PUT", f"/v1/teams/{r.team_id}/super_admin", r.super_admin, {"user_id": r.admin.id}
            ),
        )
        await _doc(stack, r.team_id)
        assert sorted([leave.status, transfer.status]) in ([200, 409], [204, 404])


async def test_random_storm_of_role_changes_keeps_invariants(stack: Stack, people: People) -> None:
    """Hundreds of concurrent random changes by every role: no 500, invariants always hold."""
    rng = random.Random(2026)
    r = await make_team(stack, people)
    actors = [r.super_admin, r.admin, r.admin2, r.user, r.user2]
    targets = [*actors, r.outsider]

    def one() -> Any:
        actor, target = rng.choice(actors), rng.choice(targets)
        t = r.team_id
        choice = rng.randrange(6)
        if choice == 0:
            return stack.call("PUT", f"/v1/teams/{t}/admins/{target.id}", actor)
        if choice == 1:
            return stack.call("DELETE", f"/v1/teams/{t}/admins/{target.id}", actor)
        if choice == 2:
            return stack.call("DELETE", f"/v1/teams/{t}/members/{target.id}", actor)
        if choice == 3:
            return stack.call("POST", f"/v1/teams/{t}/members", actor, {"user_id": target.id})
        if choice == 4:
            return stack.call("PUT", f"/v1/teams/{t}/super_admin", actor, {"user_id": target.id})
        return stack.call("PATCH", f"/v1/teams/{t}", actor, {"name": f"n{rng.randrange(9)}"})

    statuses: list[int] = []
    for _ in range(6):
        replies: list[Reply] = await asyncio.gather(*(one() for _ in range(40)))
        statuses += [x.status for x in replies]
        await _doc(stack, r.team_id)
    assert max(statuses) < 500
    assert 200 in statuses
    assert 403 in statuses
    assert _UNSET is not None
