"""TeamService over in-memory fakes: decisions, retries after lost races, and events."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from chatcore.errors import Conflict, Forbidden, NotFound
from services.management.model import MemberRef, MembershipChange, Team, TeamChanges, TeamDraft
from services.management.teams import TeamService
from services.management.validation import TeamsQuery
from tests.unit.management_fakes import (
    FakeUserDirectory,
    MemoryTeamStore,
    Published,
    RecordingPublisher,
    team_service,
)

S, A, U, X, N = (c * 32 for c in "12345")  # super_admin, admin, user, stranger, new user
TOKEN = "caller-token"


@dataclasses.dataclass
class World:
    service: TeamService
    store: MemoryTeamStore
    users: FakeUserDirectory
    events: RecordingPublisher
    team: Team


@pytest.fixture
async def world() -> World:
    """A team with a super_admin S, an admin A and a user U; N and X exist as users."""
    store = MemoryTeamStore()
    users = FakeUserDirectory({f"{u[0]}@example.com": u for u in (S, A, U, X, N)})
    events = RecordingPublisher(store)
    ids = iter(f"{i:032x}" for i in range(1, 100))
    service = team_service(
        store, users, events, clock=lambda: 1_700_000_000.1234567, new_id=lambda: next(ids)
    )
    team = await service.create(TeamDraft("core", "", ("dev",)), creator=S)
    await service.add_member(team.id, MemberRef(user_id=A), caller=S, bearer=TOKEN)
    await service.add_member(team.id, MemberRef(user_id=U), caller=S, bearer=TOKEN)
    team = await service.elect_admin(team.id, A, caller=S)
    events.clear()
    users.lookups.clear()
    store.writes = 0
    return World(service, store, users, events, team)


async def test_create_makes_the_creator_super_admin_and_announces_them() -> None:
    """The creator is super_admin, admin and only member; an ADDED event names them."""
    store = MemoryTeamStore()
    events = RecordingPublisher(store)
    service = team_service(store, FakeUserDirectory(), events, clock=lambda: 1_700_000_000.1234567)
    team = await service.create(TeamDraft("t", "", ()), creator=S)
    assert (team.members, team.admins, team.super_admin, team.active) == ((S,), (S,), S, True)
    assert team.doc.microsecond == 123000
    assert len(team.id) == 32
    assert events.events == [Published(team.id, S, MembershipChange.ADDED, S)]


async def test_no_account_joins_more_teams_than_the_cap() -> None:
    """Creating a team past the per-account cap, or being added to one past the cap less a
    tenth kept for the account's own teams, is a 409 that stores and announces nothing; an
    account others filled up can still create its own; leaving makes room."""
    store = MemoryTeamStore()
    events = RecordingPublisher(store)
    service = team_service(
        store, FakeUserDirectory({"5@example.com": N}), events, teams_per_user_max=10
    )
    teams = [await service.create(TeamDraft(f"s{i}", "", ()), creator=S) for i in range(10)]
    first = teams[0]
    with pytest.raises(Conflict, match="you are already in 10 teams"):
        await service.create(TeamDraft("eleven", "", ()), creator=S)
    assert len(store.teams) == 10
    for i in range(9):
        team = await service.create(TeamDraft(f"n{i}", "", ()), creator=U)
        await service.add_member(team.id, MemberRef(user_id=N), caller=U, bearer=TOKEN)
    published = list(events.events)
    with pytest.raises(Conflict, match="this user is already in 9 teams, the most others may"):
        await service.add_member(first.id, MemberRef(user_id=N), caller=S, bearer=TOKEN)
    assert N not in store.teams[first.id].members
    assert events.events == published
    own = await service.create(TeamDraft("mine", "", ()), creator=N)
    assert own.super_admin == N
    await service.leave(team.id, caller=N)
    await service.leave(own.id, caller=N)
    joined = await service.add_member(first.id, MemberRef(user_id=N), caller=S, bearer=TOKEN)
    assert N in joined.members


async def test_a_small_cap_keeps_no_reserve() -> None:
    """Below ten teams there is no reserve: with a cap of 2, a user in the one team they
    created can still be added to another."""
    store = MemoryTeamStore()
    service = team_service(
        store,
        FakeUserDirectory({"5@example.com": N}),
        RecordingPublisher(store),
        teams_per_user_max=2,
    )
    await service.create(TeamDraft("mine", "", ()), creator=N)
    team = await service.create(TeamDraft("theirs", "", ()), creator=U)
    joined = await service.add_member(team.id, MemberRef(user_id=N), caller=U, bearer=TOKEN)
    assert N in joined.members


async def test_add_by_email_forwards_the_token_and_publishes(world: World) -> None:
    """An admin adds by email: resolved with the caller's token, ADDED published after."""
    team = await world.service.add_member(
        world.team.id, MemberRef(email="5@example.com"), caller=A, bearer=TOKEN
    )
    assert N in team.members
    assert N not in team.admins
    assert world.users.lookups == [("5@example.com", TOKEN)]
    assert world.events.events == [Published(team.id, N, MembershipChange.ADDED, A)]


async def test_unknown_user_is_404_and_changes_nothing(world: World) -> None:
    """Unknown email or id: 404, no write, no event."""
    for ref in (MemberRef(email="nobody@example.com"), MemberRef(user_id="9" * 32)):
        with pytest.raises(NotFound, match="no such user"):
            await world.service.add_member(world.team.id, ref, caller=A, bearer=TOKEN)
    assert world.store.teams[world.team.id] == world.team
    assert world.events.events == []


async def test_user_cannot_probe_accounts_through_add(world: World) -> None:
    """A plain member gets 403 before any look-up is made."""
    with pytest.raises(Forbidden):
        await world.service.add_member(
            world.team.id, MemberRef(email="5@example.com"), caller=U, bearer=TOKEN
        )
    assert world.users.lookups == []


async def test_denied_calls_change_nothing_and_publish_nothing(world: World) -> None:
    """Every denial leaves the team as it was and emits no event."""
    t = world.team.id
    s = world.service
    denied: list[tuple[Callable[[], Awaitable[object]], type[Exception]]] = [
        (lambda: s.update(t, TeamChanges(name="x"), caller=U), Forbidden),
        (lambda: s.update(t, TeamChanges(active=False), caller=A), Forbidden),
        (lambda: s.update(t, TeamChanges(name="x"), caller=X), NotFound),
        (lambda: s.remove_member(t, S, caller=A), Forbidden),
        (lambda: s.remove_member(t, A, caller=A), Conflict),
        (lambda: s.remove_member(t, A, caller=U), Forbidden),
        (lambda: s.remove_member(t, N, caller=S), NotFound),
        (lambda: s.elect_admin(t, U, caller=A), Forbidden),
        (lambda: s.dismiss_admin(t, S, caller=S), Conflict),
        (lambda: s.transfer(t, U, caller=A), Forbidden),
        (lambda: s.transfer(t, N, caller=S), NotFound),
        (lambda: s.leave(t, caller=S), Conflict),
        (lambda: s.leave(t, caller=X), NotFound),
        (lambda: s.get(t, caller=X), NotFound),
    ]
    for call, error in denied:
        with pytest.raises(error):
            await call()
    assert world.store.teams[t] == world.team
    assert world.store.writes == 0
    assert world.events.events == []


async def test_settings_and_activation_publish_team_wide_events_only_when_they_change(
    world: World,
) -> None:
    """A rename publishes SETTINGS, toggling active DEACTIVATED/ACTIVATED, all with no user;
    a PATCH that changes nothing publishes nothing."""
    t = world.team.id
    await world.service.update(t, TeamChanges(name="renamed"), caller=A)
    await world.service.update(t, TeamChanges(name="renamed", icon=""), caller=A)  # as it is
    off = await world.service.update(t, TeamChanges(active=False), caller=S)
    same = await world.service.update(t, TeamChanges(active=False), caller=S)
    on = await world.service.update(t, TeamChanges(active=True, meta_tags=("x",)), caller=S)
    assert (off.active, same.active, on.active, on.name, on.meta_tags) == (
        False,
        False,
        True,
        "renamed",
        ("x",),
    )
    assert [e.change for e in world.events.events] == [
        MembershipChange.SETTINGS,
        MembershipChange.DEACTIVATED,
        MembershipChange.SETTINGS,
        MembershipChange.ACTIVATED,
    ]
    assert {e.user_id for e in world.events.events} == {""}


async def test_a_patch_that_changed_nothing_when_read_is_decided_again_after_a_rename(
    world: World,
) -> None:
    """Another admin renames the team between this PATCH's read and its write: the PATCH,
    which sets the name read (no news then), is decided again and announced as a rename."""
    t = world.team.id
    world.store.interfere = lambda store: _set(store, t, name="renamed elsewhere")
    team = await world.service.update(t, TeamChanges(name="core"), caller=A)
    assert (team.name, world.store.teams[t].name) == ("core", "core")
    assert [e.change for e in world.events.events] == [MembershipChange.SETTINGS]


async def test_a_rename_decided_on_a_stale_read_is_announced_at_once(world: World) -> None:
    """The team is renamed to the same name elsewhere between this PATCH's read and its write:
    the rename it decided is stored with its event, and published by this request, not left
    to the retry loop (the team before the write already had the name)."""
    t = world.team.id
    world.store.interfere = lambda store: _set(store, t, name="same")
    await world.service.update(t, TeamChanges(name="same"), caller=A)
    assert [e.change for e in world.events.events] == [MembershipChange.SETTINGS]
    assert world.store.outboxes[t] == []


async def test_a_deactivation_that_lost_a_race_to_another_is_not_announced_twice(
    world: World,
) -> None:
    """The team is deactivated elsewhere between this PATCH's read and its write: the PATCH is
    decided again on the team as it is then, and changes nothing."""
    t = world.team.id
    world.store.interfere = lambda store: _set(store, t, active=False)
    team = await world.service.update(t, TeamChanges(active=False), caller=S)
    assert team.active is False
    assert world.events.events == []


async def test_role_changes_publish_roles_events_naming_the_member(world: World) -> None:
    """Electing, dismissing and transferring each publish ROLES for the member concerned, by
    the super admin; repeating a change that is already so publishes nothing."""
    t = world.team.id
    await world.service.elect_admin(t, U, caller=S)
    await world.service.elect_admin(t, U, caller=S)  # already an admin
    await world.service.dismiss_admin(t, U, caller=S)
    await world.service.transfer(t, A, caller=S)
    assert world.events.events == [
        Published(t, U, MembershipChange.ROLES, S),
        Published(t, U, MembershipChange.ROLES, S),
        Published(t, A, MembershipChange.ROLES, S),
    ]


async def test_lost_race_is_decided_again_on_fresh_state(world: World) -> None:
    """The super_admin dismisses the admin between the admin's read and write: 403, no write."""
    world.store.interfere = lambda store: _set(
        store, world.team.id, admins=(S,)
    )  # A is no longer an admin when the write lands
    with pytest.raises(Forbidden):
        await world.service.remove_member(world.team.id, U, caller=A)
    assert U in world.store.teams[world.team.id].members
    assert world.events.events == []


async def test_lost_race_then_success_retries(world: World) -> None:
    """A write that misses once (the state changed and changed back) is retried and lands."""
    world.store.fail_next_writes = 1
    team = await world.service.remove_member(world.team.id, U, caller=A)
    assert U not in team.members
    assert world.events.events == [Published(team.id, U, MembershipChange.REMOVED, A)]


async def test_endless_races_end_in_409(world: World) -> None:
    """A change whose write keeps missing gives up with 409 and changes nothing."""
    world.store.fail_next_writes = 100
    with pytest.raises(Conflict, match="retry"):
        await world.service.remove_member(world.team.id, U, caller=A)
    assert world.store.teams[world.team.id] == world.team
    assert world.events.events == []


async def test_transfer_keeps_the_old_super_admin_as_admin(world: World) -> None:
    """After a transfer both are admins and the new one is super_admin; then S may leave."""
    team = await world.service.transfer(world.team.id, U, caller=S)
    assert team.super_admin == U
    assert {S, U} <= set(team.admins)
    await world.service.leave(world.team.id, caller=S)
    left = world.store.teams[world.team.id]
    assert S not in left.members
    assert S not in left.admins
    assert world.events.events == [
        Published(team.id, U, MembershipChange.ROLES, S),
        Published(team.id, S, MembershipChange.REMOVED, S),
    ]


async def test_last_member_leaving_deletes_the_team(world: World) -> None:
    """When the super_admin is the only member, leaving deletes the team."""
    t = world.team.id
    await world.service.remove_member(t, A, caller=S)
    await world.service.remove_member(t, U, caller=S)
    await world.service.leave(t, caller=S)
    assert t not in world.store.teams
    assert [e.change for e in world.events.events] == [MembershipChange.REMOVED] * 3


async def test_idempotent_role_changes_do_not_write(world: World) -> None:
    """Electing an admin, dismissing a user, or transferring to oneself changes nothing."""
    t = world.team.id
    assert await world.service.elect_admin(t, A, caller=S) == world.team
    assert await world.service.dismiss_admin(t, U, caller=S) == world.team
    assert await world.service.transfer(t, S, caller=S) == world.team
    assert world.store.writes == 0


async def test_list_mine_pages_by_id_with_tag_filter(world: World) -> None:
    """Pages follow next_cursor; the tag filter keeps only tagged teams."""
    for i in range(4):
        await world.service.create(TeamDraft(f"t{i}", "", ("dev",) if i % 2 else ()), creator=U)
    ids, cursor = [], None
    while True:
        page = await world.service.list_mine(U, TeamsQuery(tag=None, cursor=cursor, limit=2))
        ids += [t.id for t in page.teams]
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert ids == sorted(ids)
    assert len(ids) == 5
    tagged = await world.service.list_mine(U, TeamsQuery(tag="dev", cursor=None, limit=50))
    assert all("dev" in t.meta_tags for t in tagged.teams)
    assert len(tagged.teams) == 3


def _set(store: MemoryTeamStore, team_id: str, **values: object) -> None:
    store.teams[team_id] = dataclasses.replace(store.teams[team_id], **values)  # type: ignore[arg-type]
