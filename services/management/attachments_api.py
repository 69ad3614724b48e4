"""HTTP routes of the attachment flow: a thin translation between JSON and ``AttachmentService``.

Like every management route: authenticate (401), parse ids and body (422 before any query), then
the domain answers 404 to non-members, whatever the attachment or team id, so a stranger cannot
tell whether either exists. Writes draw from the caller's write budget; a download that must look
for the message carrying the file holds a scan slot for it (503 when they are all busy).
"""

from __future__ import annotations

from aiohttp import web

from chatcore.http import authenticate, ok, read_json_object
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier, TokenError
from services.management.attachment_rules import parse_upload_request
from services.management.attachments import AttachmentService
from services.management.limits import UserBudget
from services.management.validation import is_id, parse_id


class AttachmentApi:
    def __init__(
        self,
        service: AttachmentService,
        verifier: JwtVerifier,
        settings: Settings,
        *,
        writes: UserBudget,
    ) -> None:
        self._service = service
        self._verifier = verifier
        self._settings = settings
        self._writes = writes

    def routes(self) -> list[web.RouteDef]:
        # Any segment matches, so malformed ids get our 422 rather than a router 404.
        item = "/v1/attachments/{attachment_id:[^/]+}"
        return [
            web.post("/v1/teams/{team_id:[^/]+}/attachments", self.request_upload),
            web.post(f"{item}/complete", self.complete),
            web.get(item, self.download),
        ]

    async def _caller(self, request: web.Request) -> str:
        claims = await authenticate(request, self._verifier)
        if not is_id(claims.sub):
            raise TokenError("token subject is not a user id")
        return claims.sub

    @staticmethod
    def _attachment_id(request: web.Request) -> str:
        return parse_id(request.match_info["attachment_id"], "attachment_id")

    async def request_upload(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        self._writes.check(caller)
        team_id = parse_id(request.match_info["team_id"], "team_id")
        body = await read_json_object(request, max_bytes=self._settings.max_body_bytes)
        upload = parse_upload_request(body, max_bytes=self._settings.attachment_max_bytes)
        data = await self._service.request_upload(team_id, upload, caller=caller)
        # The presigned form is a credential for one upload: no cache may keep it (the envelope
        # middleware's no-store, which every answer gets).
        return ok(data, status=201)

    async def complete(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        self._writes.check(caller)
        item = await self._service.complete(self._attachment_id(request), caller=caller)
        return ok(item.public())

    async def download(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        # Whether a message the caller sees carries the file is a query over the channel's
        # messages: the service holds a scan slot for it (see AttachmentService.download).
        return ok(await self._service.download(self._attachment_id(request), caller=caller))
