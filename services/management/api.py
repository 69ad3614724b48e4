"""HTTP routes of the management service: a thin translation between JSON and the domain.

Every handler authenticates first (401), takes a write (or a read mark) from the caller's budget
(429) or a scan slot (503 when all are busy, or the caller holds their share), then parses ids,
query and body (422 before any query), then calls the domain, which answers 404 to non-members,
403 to members lacking the role and 409 to requests that clash with the team's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from chatcore.http import authenticate, ok, read_json_object
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier, TokenError, bearer_token
from chatcore.unread import Unread
from services.management.history import HistoryService
from services.management.limits import ScanGate, UserBudget
from services.management.messages import MessageService
from services.management.model import Team
from services.management.teams import TeamService
from services.management.validation import (
    is_id,
    parse_after_query,
    parse_edit,
    parse_history_query,
    parse_id,
    parse_member_ref,
    parse_message_id,
    parse_new_team,
    parse_reaction,
    parse_read,
    parse_team_changes,
    parse_teams_query,
    parse_transfer,
)


class UnreadSource(Protocol):
    async def unread(self, user_id: str, channel_ids: Sequence[str]) -> dict[str, Unread]: ...


class PresenceSource(Protocol):
    async def of_members(self, team_id: str, members: Sequence[str]) -> list[dict[str, Any]]:
        """``[{user_id, status, last_seen}]`` for these members of the team, in their order."""


class ManagementApi:
    def __init__(
        self,
        teams: TeamService,
        history: HistoryService,
        verifier: JwtVerifier,
        settings: Settings,
        openapi: bytes,
        *,
        writes: UserBudget,
        reads: UserBudget,
        scans: ScanGate,
        messages: MessageService,
        unread: UnreadSource,
        presence: PresenceSource,
    ) -> None:
        self._teams = teams
        self._history = history
        self._messages = messages
        self._unread = unread
        self._presence = presence
        self._verifier = verifier
        self._settings = settings
        self._openapi = openapi
        self._writes = writes
        self._reads = reads
        self._scans = scans

    def routes(self) -> list[web.RouteDef]:
        # Any segment matches, so malformed ids (braces included) get our 422, not a router 404.
        team = "/v1/teams/{team_id:[^/]+}"
        message = f"{team}/messages/{{message_id:[^/]+}}"
        return [
            web.get("/v1/openapi.json", self.openapi),
            web.post("/v1/teams", self.create),
            web.get("/v1/teams", self.list_mine),
            web.get(team, self.get),
            web.patch(team, self.update),
            web.post(f"{team}/members", self.add_member),
            web.delete(f"{team}/members/{{user_id:[^/]+}}", self.remove_member),
            web.put(f"{team}/admins/{{user_id:[^/]+}}", self.elect_admin),
            web.delete(f"{team}/admins/{{user_id:[^/]+}}", self.dismiss_admin),
            web.put(f"{team}/super_admin", self.transfer),
            web.post(f"{team}/leave", self.leave),
            web.get(f"{team}/messages", self.messages),
            web.patch(f"{message}", self.edit_message),
            web.delete(f"{message}", self.delete_message),
            web.put(f"{message}/reactions/{{emoji:[^/]+}}", self.add_reaction),
            web.delete(f"{message}/reactions/{{emoji:[^/]+}}", self.remove_reaction),
            web.get(f"{message}/thread", self.thread),
            web.get(f"{team}/changes", self.changes),
            web.put(f"{team}/read", self.mark_read),
            web.get(f"{team}/presence", self.presence),
        ]

    async def _caller(self, request: web.Request) -> str:
        claims = await authenticate(request, self._verifier)
        # The subject becomes a query value: it must be an id like any other.
        if not is_id(claims.sub):
            raise TokenError("token subject is not a user id")
        return claims.sub

    async def _writer(self, request: web.Request) -> str:
        """The caller of a write, charged to their budget."""
        caller = await self._caller(request)
        self._writes.check(caller)
        return caller

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return await read_json_object(request, max_bytes=self._settings.max_body_bytes)

    @staticmethod
    def _team_id(request: web.Request) -> str:
        return parse_id(request.match_info["team_id"], "team_id")

    @staticmethod
    def _user_id(request: web.Request) -> str:
        return parse_id(request.match_info["user_id"], "user_id")

    async def openapi(self, _request: web.Request) -> web.Response:
        # Like the JWKS, a document that tools fetch as-is: outside the envelope.
        return web.Response(
            body=self._openapi,
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def create(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        draft = parse_new_team(await self._body(request))
        team = await self._teams.create(draft, creator=caller)
        return ok(await self._team_json(team, caller), status=201)

    async def _with_unread(self, teams: list[Team], caller: str) -> list[dict[str, Any]]:
        """Team objects with the caller's ``unread`` (DESIGN 5b)."""
        counts = await self._unread.unread(caller, [t.id for t in teams])
        return [{**t.public(), "unread": counts[t.id].public()} for t in teams]

    async def _team_json(self, team: Team, caller: str) -> dict[str, Any]:
        return (await self._with_unread([team], caller))[0]

    async def list_mine(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        query = parse_teams_query(request.query.items())
        async with self._scans.hold(caller):
            page = await self._teams.list_mine(caller, query)
            body = await self._with_unread(list(page.teams), caller)
        return ok(body, meta={"has_more": page.has_more, "next_cursor": page.next_cursor})

    async def get(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        team = await self._teams.get(self._team_id(request), caller=caller)
        return ok(await self._team_json(team, caller))

    async def update(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id = self._team_id(request)
        changes = parse_team_changes(await self._body(request))
        team = await self._teams.update(team_id, changes, caller=caller)
        return ok(await self._team_json(team, caller))

    async def add_member(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id = self._team_id(request)
        ref = parse_member_ref(await self._body(request))
        # Forwarded to the auth service's users API, which checks it again.
        bearer = bearer_token(request.headers.get("Authorization"), None)
        team = await self._teams.add_member(team_id, ref, caller=caller, bearer=bearer)
        return ok(await self._team_json(team, caller), status=201)

    async def remove_member(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id, user_id = self._team_id(request), self._user_id(request)
        team = await self._teams.remove_member(team_id, user_id, caller=caller)
        return ok(await self._team_json(team, caller))

    async def elect_admin(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id, user_id = self._team_id(request), self._user_id(request)
        team = await self._teams.elect_admin(team_id, user_id, caller=caller)
        return ok(await self._team_json(team, caller))

    async def dismiss_admin(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id, user_id = self._team_id(request), self._user_id(request)
        team = await self._teams.dismiss_admin(team_id, user_id, caller=caller)
        return ok(await self._team_json(team, caller))

    async def transfer(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id = self._team_id(request)
        user_id = parse_transfer(await self._body(request))
        team = await self._teams.transfer(team_id, user_id, caller=caller)
        return ok(await self._team_json(team, caller))

    async def leave(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        await self._teams.leave(self._team_id(request), caller=caller)
        return web.Response(status=204)

    async def messages(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        team_id = self._team_id(request)
        query = parse_history_query(request.query.items())
        async with self._scans.hold(caller):
            page = await self._history.page(team_id, query, caller=caller)
        return ok([m.public() for m in page.messages], meta=page.meta())

    @staticmethod
    def _message_id(request: web.Request) -> str:
        return parse_message_id(request.match_info["message_id"])

    async def edit_message(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id, message_id = self._team_id(request), self._message_id(request)
        data = parse_edit(await self._body(request))
        return ok((await self._messages.edit(team_id, message_id, data, caller=caller)).public())

    async def delete_message(self, request: web.Request) -> web.Response:
        caller = await self._writer(request)
        team_id, message_id = self._team_id(request), self._message_id(request)
        await self._messages.delete(team_id, message_id, caller=caller)
        return web.Response(status=204)

    async def _react(self, request: web.Request, *, add: bool) -> web.Response:
        caller = await self._writer(request)
        team_id, message_id = self._team_id(request), self._message_id(request)
        emoji = parse_reaction(request.match_info["emoji"])
        await self._messages.react(team_id, message_id, emoji, caller=caller, add=add)
        return web.Response(status=204)

    async def add_reaction(self, request: web.Request) -> web.Response:
        return await self._react(request, add=True)

    async def remove_reaction(self, request: web.Request) -> web.Response:
        return await self._react(request, add=False)

    async def thread(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        team_id, message_id = self._team_id(request), self._message_id(request)
        query = parse_after_query(request.query.items())
        async with self._scans.hold(caller):
            page = await self._messages.thread(team_id, message_id, query, caller=caller)
        return ok([m.public() for m in page.items], meta=page.meta())

    async def changes(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        team_id = self._team_id(request)
        query = parse_after_query(request.query.items())
        async with self._scans.hold(caller):
            page = await self._messages.changes(team_id, query, caller=caller)
        return ok([e.public() for e in page.items], meta=page.meta())

    async def mark_read(self, request: web.Request) -> web.Response:
        # A budget of its own: clients mark read as messages come into view, which a write
        # budget sized for team changes would not allow.
        caller = await self._caller(request)
        self._reads.check(caller)
        team_id = self._team_id(request)
        seq = parse_read(await self._body(request))
        await self._messages.mark_read(team_id, seq, caller=caller)
        return web.Response(status=204)

    async def presence(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        team = await self._teams.get(self._team_id(request), caller=caller)
        return ok(await self._presence.of_members(team.id, team.members))
