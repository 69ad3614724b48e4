"""The management HTTP layer over fakes: status codes, envelopes, and bad input never reaching
a store."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import CollectorRegistry

from chatcore.http import Health, make_app
from chatcore.message_state import Reaction, StoredMessage
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier, StaticJwksSource
from chatcore.unread import ChannelHead, Unread
from services.auth.keys import KeyRing, SigningKey, TokenIssuer
from services.management.api import ManagementApi
from services.management.attachments import AttachmentLimits, AttachmentMetrics, AttachmentService
from services.management.attachments_api import AttachmentApi
from services.management.history import HistoryService
from services.management.limits import ScanGate, UserBudget
from services.management.messages import MessageService
from services.management.openapi import load_openapi
from services.management.store import ChangeEntry
from tests.unit.management_fakes import (
    FakeLog,
    FakeScanner,
    FakeUserDirectory,
    FixedHeads,
    FixedPresence,
    FixedUnread,
    MemoryAttachmentStore,
    MemoryMessageStore,
    MemoryObjects,
    MemoryTeamStore,
    RecordingPublisher,
    team_service,
)

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32
WRITE_BURST, WRITE_PER_S = 20, 0.5
READ_BURST, READ_PER_S = 30, 3.0


@dataclasses.dataclass
class Harness:
    client: TestClient[Any, Any]
    teams: MemoryTeamStore
    messages: MemoryMessageStore
    events: RecordingPublisher
    tokens: dict[str, str]
    clock: list[float]
    scans: ScanGate
    attachments: MemoryAttachmentStore
    objects: MemoryObjects
    scanner: FakeScanner
    log: FakeLog
    unread: FixedUnread
    presence: FixedPresence
    heads: FixedHeads
    # The wall clock the message rules see (Unix seconds).
    wall: list[float]

    async def call(
        self, method: str, path: str, who: str | None = ALICE, body: Any = None, raw: bytes = b""
    ) -> tuple[int, Any]:
        status, reply, _headers = await self.respond(method, path, who, body, raw)
        return status, reply

    async def respond(
        self, method: str, path: str, who: str | None = ALICE, body: Any = None, raw: bytes = b""
    ) -> tuple[int, Any, dict[str, str]]:
        """Status, decoded body and headers of one request."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        data = json.dumps(body).encode() if body is not None else raw
        async with self.client.request(method, path, data=data, headers=headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None, dict(resp.headers)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """The real routes and middleware over in-memory stores, S3 and clamd, with tokens for Alice
    and Bob; team and attachment routes share one write budget, as in the service."""
    settings = Settings()
    ring = KeyRing([SigningKey.from_private_key(ed25519.Ed25519PrivateKey.generate())])
    issuer = TokenIssuer(ring, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_s=60)
    verifier = JwtVerifier.from_settings(settings, StaticJwksSource(ring.jwks()))
    teams, messages = MemoryTeamStore(), MemoryMessageStore()
    events = RecordingPublisher(teams)
    service = team_service(teams, FakeUserDirectory({"bob@example.com": BOB}), events)
    history = HistoryService(teams=teams, messages=messages)
    registry = CollectorRegistry()
    app = make_app(registry=registry, health=Health({}), max_body_bytes=settings.max_body_bytes)
    _doc, openapi = load_openapi()
    clock = [1000.0]
    scans = ScanGate(limit=1, wait_s=0)
    writes = UserBudget(burst=WRITE_BURST, per_s=WRITE_PER_S, clock=lambda: clock[0])
    reads = UserBudget(burst=READ_BURST, per_s=READ_PER_S, clock=lambda: clock[0])
    log, unread, presence, heads = FakeLog(), FixedUnread(), FixedPresence(), FixedHeads()
    wall = [1_767_225_600.0]  # 2026-01-01T00:00:00Z
    attachments, objects, scanner = MemoryAttachmentStore(), MemoryObjects(), FakeScanner()
    uploads = AttachmentService(
        teams=teams,
        messages=messages,
        records=attachments,
        objects=objects,
        scanner=scanner,
        limits=AttachmentLimits(
            max_bytes=settings.attachment_max_bytes,
            upload_ttl_s=900,
            download_ttl_s=300,
            pending_max_age_s=3600,
            bytes_per_user_day=settings.attachment_bytes_per_user_day,
        ),
        metrics=AttachmentMetrics.create(CollectorRegistry()),
        scan_slot=scans.hold,
    )
    lifecycle = MessageService(
        teams=teams,
        messages=messages,
        attachments=uploads,
        log=log,
        edit_window_s=settings.edit_window_s,
        send_timeout_s=5.0,
        clock=lambda: wall[0],
        scan_slot=scans.hold,
    )
    api = ManagementApi(
        service,
        history,
        verifier,
        settings,
        openapi,
        writes=writes,
        reads=reads,
        scans=scans,
        messages=lifecycle,
        unread=unread,
        presence=presence,
    )
    app.add_routes(api.routes())
    app.add_routes(AttachmentApi(uploads, verifier, settings, writes=writes).routes())
    tokens = {u: issuer.issue(u).token for u in (ALICE, BOB, CAROL)}
    tokens["not-an-id"] = issuer.issue("not-an-id").token
    async with TestClient(TestServer(app)) as client:
        yield Harness(
            client,
            teams,
            messages,
            events,
            tokens,
            clock,
            scans,
            attachments,
            objects,
            scanner,
            log,
            unread,
            presence,
            heads,
            wall,
        )


async def test_create_then_read_through_the_routes(harness: Harness) -> None:
    """201 with the team in the envelope, then 200 for its member and 404 for a stranger."""
    status, body = await harness.call("POST", "/v1/teams", body={"name": "t", "meta_tags": ["a"]})
    assert status == 201
    assert body["meta"] == {}
    team_id = body["data"]["id"]
    status, body = await harness.call("GET", f"/v1/teams/{team_id}")
    assert status == 200
    assert body["data"]["super_admin"] == ALICE
    status, body = await harness.call("GET", f"/v1/teams/{team_id}", who=BOB)
    assert status == 404
    assert body["error"]["code"] == "not_found"


OPERATOR_SHAPED: list[tuple[str, str, Any]] = [
    ("POST", "/v1/teams", {"name": {"$gt": ""}}),
    ("POST", "/v1/teams", {"name": "x", "$set": {"admins": []}}),
    ("POST", "/v1/teams", {"name": "x", "super_admin": BOB}),
    ("PATCH", "/v1/teams/{t}", {"$set": {"super_admin": BOB}}),
    ("PATCH", "/v1/teams/{t}", {"meta_tags": {"$each": ["a"]}}),
    ("POST", "/v1/teams/{t}/members", {"user_id": {"$gt": ""}}),
    ("POST", "/v1/teams/{t}/members", {"email": {"$ne": None}}),
    ("POST", "/v1/teams/{t}/members", {"$where": "true"}),
    ("PUT", "/v1/teams/{t}/super_admin", {"user_id": {"$ne": ALICE}}),
    ("GET", "/v1/teams/%7B%22%24gt%22%3A%22%22%7D", None),
    ("DELETE", "/v1/teams/{t}/members/%24ne", None),
    ("PUT", "/v1/teams/{t}/admins/%7B%22%24gt%22%3A%22%22%7D", None),
    ("GET", "/v1/teams?cursor=%7B%22%24gt%22%3A%22%22%7D", None),
    ("GET", "/v1/teams?tag=%24ne", None),
    ("GET", "/v1/teams/{t}/messages?after=%7B%22%24gt%22%3A0%7D", None),
    ("GET", "/v1/teams/{t}/messages?before=1&after=2", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_SHAPED)
async def test_operator_shaped_input_never_reaches_a_store(
    harness: Harness, method: str, path: str, body: Any
) -> None:
    """Operator-shaped ids, keys and values are 422 before any store method runs."""
    status, created = await harness.call("POST", "/v1/teams", body={"name": "t"})
    harness.teams.calls.clear()
    status, reply = await harness.call(
        method, path.replace("{t}", created["data"]["id"]), body=body
    )
    assert status == 422, reply
    assert reply["error"]["code"] == "invalid"
    assert reply["error"]["details"]
    assert harness.teams.calls == []
    assert harness.messages.calls == []


async def test_broken_bodies(harness: Harness) -> None:
    """Not JSON: 400; a JSON array: 422; over the size limit: 413; nothing stored."""
    assert (await harness.call("POST", "/v1/teams", raw=b"{nope"))[0] == 400
    assert (await harness.call("POST", "/v1/teams", body=["name"]))[0] == 422
    assert (await harness.call("POST", "/v1/teams", raw=b"x" * 70_000))[0] == 413
    assert harness.teams.calls == []


async def test_tokens_with_a_non_id_subject_are_refused(harness: Harness) -> None:
    """A validly signed token whose subject is not a user id never becomes a query value."""
    status, body = await harness.call("GET", "/v1/teams", who="not-an-id")
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert harness.teams.calls == []


async def test_openapi_document_is_served_verbatim(harness: Harness) -> None:
    """GET /v1/openapi.json needs no token and returns the repository's document."""
    _doc, raw = load_openapi()
    async with harness.client.get("/v1/openapi.json") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert await resp.read() == raw


async def test_writes_over_the_budget_are_429_with_retry_after_and_change_nothing(
    harness: Harness,
) -> None:
    """After the burst a user's writes answer 429 + Retry-After; others and reads are unaffected;
    the budget refills with time."""
    for i in range(WRITE_BURST):
        status, _ = await harness.call("POST", "/v1/teams", body={"name": f"t{i}"})
        assert status == 201
    teams_before = len(harness.teams.teams)
    status, body = await harness.call("POST", "/v1/teams", body={"name": "one too many"})
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
    team_id = next(iter(harness.teams.teams))
    status, _ = await harness.call("POST", f"/v1/teams/{team_id}/members", body={"user_id": BOB})
    assert status == 429
    assert len(harness.teams.teams) == teams_before
    assert BOB not in harness.teams.teams[team_id].members
    async with harness.client.post(
        "/v1/teams",
        data=json.dumps({"name": "x"}),
        headers={"Authorization": f"Bearer {harness.tokens[ALICE]}"},
    ) as resp:
        assert resp.headers["Retry-After"] == "2"  # one write at 0.5 per second
    assert (await harness.call("GET", f"/v1/teams/{team_id}"))[0] == 200
    assert (await harness.call("POST", "/v1/teams", who=BOB, body={"name": "bob's"}))[0] == 201
    harness.clock[0] += 2.0
    assert (await harness.call("POST", "/v1/teams", body={"name": "later"}))[0] == 201


async def test_attachment_requests_and_completions_over_the_budget_are_429_and_change_nothing(
    harness: Harness,
) -> None:
    """Past the write budget, requesting an upload and completing one answer 429 + Retry-After,
    record nothing and scan nothing; once the budget refills the completion goes through."""
    _status, body = await harness.call("POST", "/v1/teams", body={"name": "t"})
    team_id = body["data"]["id"]
    upload = {"filename": "a.txt", "content_type": "text/plain", "size": 5}
    ids = []
    for _ in range(WRITE_BURST - 1):
        status, body = await harness.call("POST", f"/v1/teams/{team_id}/attachments", body=upload)
        assert status == 201, body
        ids.append(body["data"]["id"])
    first = ids[0]
    harness.objects.objects[harness.attachments.items[first].key] = (b"hello", "text/plain")

    status, body, headers = await harness.respond(
        "POST", f"/v1/teams/{team_id}/attachments", body=upload
    )
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert headers["Retry-After"] == "2"  # one write at 0.5 per second
    assert len(harness.attachments.items) == WRITE_BURST - 1

    status, body, headers = await harness.respond("POST", f"/v1/attachments/{first}/complete")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert headers["Retry-After"] == "2"
    assert harness.attachments.items[first].status == "pending"
    assert harness.scanner.scanned == []

    harness.clock[0] += 2.0
    status, body = await harness.call("POST", f"/v1/attachments/{first}/complete")
    assert status == 200, body
    assert body["data"]["status"] == "ready"
    assert harness.scanner.scanned == [b"hello"]


async def test_scans_beyond_the_bound_are_503_with_retry_after(harness: Harness) -> None:
    """While every scan slot is taken, history, team lists and the downloads that must look the
    carrying message up answer 503 + Retry-After; the uploader's own download needs no slot."""
    team_id = await _team_with_bob(harness)
    upload = {"filename": "a.txt", "content_type": "text/plain", "size": 5}
    _status, body = await harness.call("POST", f"/v1/teams/{team_id}/attachments", body=upload)
    item = harness.attachments.items[body["data"]["id"]]
    harness.attachments.items[item.id] = dataclasses.replace(item, status="ready")
    attachment = f"/v1/attachments/{item.id}"
    async with harness.scans.hold(CAROL):
        assert (await harness.call("GET", attachment))[0] == 200  # Alice uploaded it
        for path, who in (
            (f"/v1/teams/{team_id}/messages", ALICE),
            ("/v1/teams", ALICE),
            (attachment, BOB),  # is it in a message Bob may see?
        ):
            async with harness.client.get(
                path, headers={"Authorization": f"Bearer {harness.tokens[who]}"}
            ) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "1"
                assert (await resp.json())["error"]["code"] == "unavailable"
    assert (await harness.call("GET", f"/v1/teams/{team_id}/messages"))[0] == 200
    assert (await harness.call("GET", attachment, who=BOB))[0] == 404  # sent to nobody yet


# --- the message life cycle (DESIGN 5b) ---------------------------------------------------------

T_POSTED = datetime(2026, 1, 1, tzinfo=UTC)


async def _team_with_bob(harness: Harness) -> str:
    status, body = await harness.call("POST", "/v1/teams", body={"name": "life"})
    assert status == 201
    team_id = str(body["data"]["id"])
    status, _ = await harness.call(
        "POST", f"/v1/teams/{team_id}/members", body={"email": "bob@example.com"}
    )
    assert status == 201
    return team_id


def _stored(
    harness: Harness, team_id: str, seq: int, sender: str, *, to: str = "*", kind: str = "text"
) -> StoredMessage:
    message = StoredMessage(
        f"M{seq:025d}", seq, team_id, to, kind, "hello", sender, T_POSTED, count=seq
    )
    harness.messages.messages.append(message)
    return message


async def test_the_author_edits_within_the_window_and_gets_the_edited_message(
    harness: Harness,
) -> None:
    """200 with the new text and edited_ts; the change reaches the log keyed by the team."""
    team = await _team_with_bob(harness)
    message = _stored(harness, team, 5, ALICE)
    harness.wall[0] = T_POSTED.timestamp() + 60
    status, body = await harness.call(
        "PATCH", f"/v1/teams/{team}/messages/{message.id}", body={"data": "fixed"}
    )
    assert status == 200, body
    assert (body["data"]["data"], body["data"]["edited_ts"]) == (
        "fixed",
        "2026-01-01T00:01:00.000Z",
    )
    (change,) = harness.log.changes()
    assert (change.message_id, change.kind, change.data, change.actor) == (
        message.id,
        chat_pb2.CHANGE_KIND_EDIT,
        "fixed",
        ALICE,
    )
    assert harness.log.records[0]["key"] == team.encode()


async def test_edits_after_the_window_or_by_others_are_403_and_change_nothing(
    harness: Harness,
) -> None:
    """Past CHAT_EDIT_WINDOW_S the author gets 403; another member always does."""
    team = await _team_with_bob(harness)
    mine = _stored(harness, team, 5, BOB)
    path = f"/v1/teams/{team}/messages/{mine.id}"
    harness.wall[0] = T_POSTED.timestamp() + 301
    assert (await harness.call("PATCH", path, who=BOB, body={"data": "late"}))[0] == 403
    harness.wall[0] = T_POSTED.timestamp() + 10
    assert (await harness.call("PATCH", path, who=ALICE, body={"data": "not mine"}))[0] == 403
    assert harness.log.records == []


async def test_an_admin_deletes_anyones_message_at_any_time_and_a_member_only_their_own(
    harness: Harness,
) -> None:
    """204 for the super_admin on Bob's old message; 403 for Bob on Alice's."""
    team = await _team_with_bob(harness)
    bobs, alices = _stored(harness, team, 5, BOB), _stored(harness, team, 6, ALICE)
    harness.wall[0] = T_POSTED.timestamp() + 86_400
    status, _ = await harness.call("DELETE", f"/v1/teams/{team}/messages/{alices.id}", who=BOB)
    assert status == 403
    status, _ = await harness.call("DELETE", f"/v1/teams/{team}/messages/{bobs.id}")
    assert status == 204
    assert [(c.message_id, c.kind) for c in harness.log.changes()] == [
        (bobs.id, chat_pb2.CHANGE_KIND_DELETE)
    ]


async def test_deleting_one_of_two_messages_carrying_a_file_keeps_the_file(
    harness: Harness,
) -> None:
    """Alice sent one file to the team and again in a DM to Bob: deleting the DM leaves the file
    downloadable through the team message; deleting that one too withdraws it (404, bytes gone)."""
    team = await _team_with_bob(harness)
    upload = {"filename": "a.txt", "content_type": "text/plain", "size": 5}
    _status, body = await harness.call("POST", f"/v1/teams/{team}/attachments", body=upload)
    file_id = body["data"]["id"]
    key = harness.attachments.items[file_id].key
    harness.objects.objects[key] = (b"hello", "text/plain")
    assert (await harness.call("POST", f"/v1/attachments/{file_id}/complete"))[0] == 200
    shared = dataclasses.replace(_stored(harness, team, 5, ALICE, kind="file"), data=file_id)
    dm = dataclasses.replace(_stored(harness, team, 6, ALICE, to=BOB, kind="file"), data=file_id)
    harness.messages.messages[-2:] = [shared, dm]
    assert (await harness.call("DELETE", f"/v1/teams/{team}/messages/{dm.id}"))[0] == 204
    assert f"{key}.scanned" in harness.objects.objects  # the scanned copy downloads serve
    assert (await harness.call("GET", f"/v1/attachments/{file_id}", who=BOB))[0] == 200
    # The controller applies the delete: the DM becomes a tombstone that carries nothing.
    harness.messages.messages[-1] = dataclasses.replace(dm, data="", deleted=True)
    assert (await harness.call("DELETE", f"/v1/teams/{team}/messages/{shared.id}"))[0] == 204
    assert not [k for k in harness.objects.objects if k.startswith(key)]
    assert (await harness.call("GET", f"/v1/attachments/{file_id}"))[0] == 404


async def test_reactions_are_idempotent_and_limited_to_twenty_distinct(harness: Harness) -> None:
    """A repeated PUT writes nothing more; a 21st distinct emoji is 409; a bad emoji 422."""
    team = await _team_with_bob(harness)
    message = _stored(harness, team, 5, ALICE)
    path = f"/v1/teams/{team}/messages/{message.id}/reactions"
    assert (await harness.call("PUT", f"{path}/%F0%9F%91%8D", who=BOB))[0] == 204
    assert len(harness.log.changes()) == 1
    harness.messages.messages[-1] = dataclasses.replace(
        message, reactions=(Reaction("👍", (BOB,)),)
    )
    assert (await harness.call("PUT", f"{path}/%F0%9F%91%8D", who=BOB))[0] == 204
    assert (await harness.call("DELETE", f"{path}/%3Aparty%3A", who=BOB))[0] == 204
    assert len(harness.log.changes()) == 1  # neither changed anything
    full = tuple(Reaction(f":e{i}:", (ALICE,)) for i in range(20))
    harness.messages.messages[-1] = dataclasses.replace(message, reactions=full)
    assert (await harness.call("PUT", f"{path}/%3Anew%3A", who=BOB))[0] == 409
    assert (await harness.call("PUT", f"{path}/:e3:", who=BOB))[0] == 204
    assert (await harness.call("PUT", f"{path}/abc", who=BOB))[0] == 422
    assert [c.emoji for c in harness.log.changes()] == ["👍", ":e3:"]


async def test_a_deactivated_team_refuses_edits_deletes_and_reactions(harness: Harness) -> None:
    """Read-only means the history too: 403 for an edit, a delete and a reaction, and nothing
    reaches the log; reading and marking read go on; reactivated, the edit goes through."""
    team = await _team_with_bob(harness)
    message = _stored(harness, team, 5, BOB)
    harness.wall[0] = T_POSTED.timestamp() + 10
    assert (await harness.call("PATCH", f"/v1/teams/{team}", body={"active": False}))[0] == 200
    path = f"/v1/teams/{team}/messages/{message.id}"
    status, body = await harness.call("PATCH", path, who=BOB, body={"data": "rewritten"})
    assert (status, body["error"]["message"]) == (403, "this team is deactivated")
    assert (await harness.call("PUT", f"{path}/reactions/:x:", who=BOB))[0] == 403
    assert (await harness.call("DELETE", path, who=BOB))[0] == 403
    assert (await harness.call("DELETE", path))[0] == 403  # the super_admin too
    assert harness.log.changes() == []
    assert (await harness.call("GET", f"/v1/teams/{team}/messages", who=BOB))[0] == 200
    assert (await harness.call("PUT", f"/v1/teams/{team}/read", who=BOB, body={"seq": 5}))[0] == 204
    assert (await harness.call("PATCH", f"/v1/teams/{team}", body={"active": True}))[0] == 200
    assert (await harness.call("PATCH", path, who=BOB, body={"data": "rewritten"}))[0] == 200
    assert [c.data for c in harness.log.changes()] == ["rewritten"]


async def test_messages_of_other_teams_and_others_dms_are_404(harness: Harness) -> None:
    """A DM between two others, or a message id of another team, does not exist for the caller."""
    team = await _team_with_bob(harness)
    dm = _stored(harness, team, 5, ALICE, to=CAROL)
    harness.teams.teams[team] = dataclasses.replace(
        harness.teams.teams[team], members=(*harness.teams.teams[team].members, CAROL)
    )
    path = f"/v1/teams/{team}/messages/{dm.id}"
    assert (await harness.call("PUT", f"{path}/reactions/:x:", who=BOB))[0] == 404
    assert (await harness.call("GET", f"{path}/thread", who=BOB))[0] == 404
    other = await _team_with_bob(harness)
    assert (await harness.call("DELETE", f"/v1/teams/{other}/messages/{dm.id}"))[0] == 404


async def test_marking_read_writes_a_marker_with_the_count_at_that_seq(harness: Harness) -> None:
    """The marker carries the seq and the channel's team-message count there; a seq between
    records counts up to the message before it, one past the newest message is that message;
    the team object carries the caller's unread."""
    team = await _team_with_bob(harness)
    _stored(harness, team, 7, ALICE)
    _stored(harness, team, 12, ALICE)
    harness.heads.heads[team] = ChannelHead(count=12, count_seq=12, last_seq=14)
    path = f"/v1/teams/{team}/read"
    for asked in (7, 8, 10**12):
        assert (await harness.call("PUT", path, who=BOB, body={"seq": asked}))[0] == 204
    assert [(m.user_id, m.seq, m.count, m.joined) for m in harness.log.reads()] == [
        (BOB, 7, 7, False),
        (BOB, 8, 7, False),
        (BOB, 12, 12, False),
    ]
    status, body = await harness.call("PUT", path, who=BOB, body={"seq": -1})
    assert status == 422
    harness.unread.counts[(team, BOB)] = Unread(3, 1, 7)
    status, body = await harness.call("GET", f"/v1/teams/{team}", who=BOB)
    assert body["data"]["unread"] == {"count": 3, "mentions": 1, "last_read_seq": 7}
    status, body = await harness.call("GET", "/v1/teams", who=BOB)
    assert body["data"][0]["unread"]["count"] == 3


async def test_a_read_mark_at_a_hidden_dm_reads_one_message_of_history(harness: Harness) -> None:
    """A seq that is another pair's DM, above the caller's newest message, is taken as that
    message: found by one history page of one message, not by counting what lies between."""
    team = await _team_with_bob(harness)
    _stored(harness, team, 3, ALICE)
    for seq in range(4, 40):
        _stored(harness, team, seq, ALICE, to=CAROL)
    harness.heads.heads[team] = ChannelHead(count=3, count_seq=3, last_seq=39)
    harness.messages.messages = [
        dataclasses.replace(m, count=3) if m.seq > 3 else m for m in harness.messages.messages
    ]
    harness.messages.calls.clear()
    status, _ = await harness.call("PUT", f"/v1/teams/{team}/read", who=BOB, body={"seq": 20})
    assert status == 204
    assert [(m.seq, m.count) for m in harness.log.reads()] == [(3, 3)]
    assert harness.messages.calls.count("page") == 1
    assert "count_before" not in harness.messages.calls


async def test_a_read_mark_that_must_read_history_takes_a_scan_slot(harness: Harness) -> None:
    """A mark at a seq the caller has not seen reads a page of history: while every scan slot
    is taken it answers 503 and writes nothing; a mark at a message the caller saw reads none
    and is written as usual."""
    team = await _team_with_bob(harness)
    _stored(harness, team, 7, ALICE)
    path = f"/v1/teams/{team}/read"
    async with harness.scans.hold(CAROL):
        assert (await harness.call("PUT", path, who=BOB, body={"seq": 10**12}))[0] == 503
        assert (await harness.call("PUT", path, who=BOB, body={"seq": 7}))[0] == 204
    assert [m.seq for m in harness.log.reads()] == [7]


async def test_read_marks_over_their_budget_are_429_and_write_nothing(harness: Harness) -> None:
    """Past the read-mark burst a user's marks answer 429 with Retry-After and reach no log;
    another user's marks and the first user's writes are unaffected."""
    team = await _team_with_bob(harness)
    _stored(harness, team, 7, ALICE)
    harness.heads.heads[team] = ChannelHead(count=7, count_seq=7, last_seq=7)
    path = f"/v1/teams/{team}/read"
    for _ in range(READ_BURST):
        assert (await harness.call("PUT", path, who=BOB, body={"seq": 7}))[0] == 204
    status, body, headers = await harness.respond("PUT", path, BOB, {"seq": 7})
    assert (status, body["error"]["code"], headers["Retry-After"]) == (429, "rate_limited", "1")
    assert len(harness.log.reads()) == READ_BURST
    assert (await harness.call("PUT", path, who=ALICE, body={"seq": 7}))[0] == 204
    assert (await harness.call("PATCH", f"/v1/teams/{team}", who=ALICE, body={"name": "n"}))[
        0
    ] == 200
    harness.clock[0] += 1 / READ_PER_S
    assert (await harness.call("PUT", path, who=BOB, body={"seq": 7}))[0] == 204


async def test_a_message_just_delivered_is_marked_read_before_its_head_is_saved(
    harness: Harness,
) -> None:
    """The channel's head is saved up to a checkpoint after the fan-out: a seq the caller saw
    live is marked as it is (with the count stored with the message), not clamped to the head;
    a made-up seq beyond the newest message is taken as that message."""
    team = await _team_with_bob(harness)
    _stored(harness, team, 7, ALICE)
    _stored(harness, team, 12, ALICE)
    harness.heads.heads[team] = ChannelHead(count=7, count_seq=7, last_seq=7)
    path = f"/v1/teams/{team}/read"
    for asked in (12, 10**12):
        assert (await harness.call("PUT", path, who=BOB, body={"seq": asked}))[0] == 204
    assert [(m.seq, m.count) for m in harness.log.reads()] == [(12, 12), (12, 12)]


async def test_a_read_position_never_tells_where_others_dms_are(harness: Harness) -> None:
    """A made-up seq past everything is taken as the newest message the caller may see, not the
    channel's last record (Alice's DM to Carol); below it, any seq is taken as asked, a DM of
    others included, so the answer is the same whether or not a hidden record is there."""
    team = await _team_with_bob(harness)
    _stored(harness, team, 7, ALICE)
    _stored(harness, team, 9, ALICE, to=CAROL)
    _stored(harness, team, 12, ALICE, to=BOB)
    _stored(harness, team, 15, ALICE, to=CAROL)
    _stored(harness, team, 16, CAROL, to=ALICE)
    harness.heads.heads[team] = ChannelHead(count=7, count_seq=7, last_seq=16)
    path = f"/v1/teams/{team}/read"
    for asked in (10**12, 16, 15, 13, 9, 8):
        assert (await harness.call("PUT", path, who=BOB, body={"seq": asked}))[0] == 204
    assert [m.seq for m in harness.log.reads()] == [12, 12, 12, 12, 9, 8]


async def test_the_message_at_seq_0_is_marked_read_and_an_empty_channel_writes_nothing(
    harness: Harness,
) -> None:
    """Seqs start at 0: reading the first record of a partition is a read position like any
    other; in a channel where nothing is stored there is nothing to mark, and nothing is
    written; a never-read channel reports last_read_seq -1."""
    team = await _team_with_bob(harness)
    path = f"/v1/teams/{team}/read"
    assert (await harness.call("PUT", path, who=BOB, body={"seq": 0}))[0] == 204
    assert (await harness.call("PUT", path, who=BOB, body={"seq": 5}))[0] == 204
    assert harness.log.reads() == []
    status, body = await harness.call("GET", f"/v1/teams/{team}", who=BOB)
    assert status == 200
    assert body["data"]["unread"] == {"count": 0, "mentions": 0, "last_read_seq": -1}
    first = _stored(harness, team, 0, ALICE)
    harness.messages.messages[-1] = dataclasses.replace(first, count=1)
    assert (await harness.call("PUT", path, who=BOB, body={"seq": 0}))[0] == 204
    assert [(m.seq, m.count) for m in harness.log.reads()] == [(0, 1)]


def _thread_pair(harness: Harness, team: str) -> tuple[StoredMessage, StoredMessage]:
    """Alice's root at seq 5 and Bob's reply at 6, with the root's thread change at 6 too."""
    root = _stored(harness, team, 5, ALICE)
    reply = dataclasses.replace(_stored(harness, team, 6, BOB), thread_id=root.id)
    harness.messages.messages[-1] = reply
    harness.messages.change_log.append(
        (ChangeEntry(6, "thread", dataclasses.replace(root, thread_replies=1)), 6)
    )
    return root, reply


async def test_changes_and_thread_pages_walk_forward_with_a_cursor(harness: Harness) -> None:
    """The changes feed lists creations and changes in seq order after the cursor; a thread page
    lists the replies; both say whether more follow."""
    team = await _team_with_bob(harness)
    root, reply = _thread_pair(harness, team)
    harness.messages.change_log.append(
        (ChangeEntry(8, "edited", dataclasses.replace(root, data="x")), 6)
    )
    status, body = await harness.call("GET", f"/v1/teams/{team}/changes?after=5&limit=2")
    assert status == 200
    assert [(e["seq"], e["change"]) for e in body["data"]] == [(6, "created"), (6, "thread")]
    assert body["meta"]["has_more"] is True
    status, body = await harness.call(
        "GET", f"/v1/teams/{team}/changes?after={body['meta']['next_cursor']}"
    )
    assert [(e["seq"], e["change"]) for e in body["data"]] == [(8, "edited")]
    status, body = await harness.call("GET", f"/v1/teams/{team}/messages/{root.id}/thread")
    assert [m["id"] for m in body["data"]] == [reply.id]
    assert body["data"][0]["thread_id"] == root.id


async def test_a_changes_walk_of_pages_of_one_never_loses_a_thread_change(
    harness: Harness,
) -> None:
    """A reply and its root's thread change share a seq: with limit=1 they come as one page of
    two, so walking page by page sees every entry once."""
    team = await _team_with_bob(harness)
    _thread_pair(harness, team)
    _stored(harness, team, 7, ALICE)
    seen: list[tuple[int, str]] = []
    cursor, more = -1, True
    while more:
        status, body = await harness.call("GET", f"/v1/teams/{team}/changes?after={cursor}&limit=1")
        assert status == 200
        seen += [(e["seq"], e["change"]) for e in body["data"]]
        cursor, more = body["meta"]["next_cursor"], body["meta"]["has_more"]
    assert seen == [(5, "created"), (6, "created"), (6, "thread"), (7, "created")]


async def test_pages_through_other_members_dms_stop_short_and_say_where_to_go_on(
    harness: Harness,
) -> None:
    """A store walk bounded to a few records gives Bob short (even empty) pages of history and
    changes, each with has_more and the cursor to go on from; following them he gets his
    messages once, in order, and never Alice's DMs to Carol."""
    team = await _team_with_bob(harness)
    for seq in range(1, 30):
        _stored(harness, team, seq, ALICE, to="*" if seq % 10 == 0 else CAROL)
    harness.messages.walk_span = 4
    for route in ("messages", "changes"):
        seen: list[int] = []
        cursor, more, short = -1, True, 0
        while more:
            path = f"/v1/teams/{team}/{route}?after={cursor}&limit=5"
            status, body = await harness.call("GET", path, who=BOB)
            assert status == 200
            page = [e["seq"] for e in body["data"]]
            seen += page
            more = body["meta"]["has_more"]
            short += more and len(page) < 5
            assert body["meta"]["next_cursor"] > cursor or not more
            cursor = body["meta"]["next_cursor"]
        assert seen == [10, 20], route
        assert short > 0


async def test_presence_lists_every_member_with_a_status(harness: Harness) -> None:
    """Members only, in the team's order, online or offline; 404 for strangers."""
    team = await _team_with_bob(harness)
    harness.presence.online.add(BOB)
    status, body = await harness.call("GET", f"/v1/teams/{team}/presence")
    assert status == 200
    assert [(p["user_id"], p["status"]) for p in body["data"]] == [
        (ALICE, "offline"),
        (BOB, "online"),
    ]
    status, _ = await harness.call("GET", f"/v1/teams/{team}/presence", who=CAROL)
    assert status == 404
