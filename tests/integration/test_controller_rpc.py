"""The controller's gRPC questions, health and metrics against documents in the real database,
and a start-up that fails half-way."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import grpc
import pytest
from grpc import aio

# grpcio-health-checking ships no type information.
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import InvalidOperation

from chatcore.kafka import make_producer
from chatcore.mongo import Document, database, make_mongo_client
from chatcore.proto.chat.v1 import chat_pb2, chat_pb2_grpc
from chatcore.settings import Settings
from services.controller import server as controller_server
from services.controller.consumer import make_controller_consumer
from services.controller.server import RunningController, start
from tests.internal_grpc import authed_stub
from tests.team_docs import store_team


@pytest.fixture(scope="module")
async def ctrl_settings(settings: Settings) -> Settings:
    """Settings with this module's own database and consumer group."""
    return dataclasses.replace(
        settings,
        mongo_db=f"chat_test_ctrl_{uuid.uuid4().hex[:12]}",
        controller_group_id=f"test-ctrl-{uuid.uuid4().hex}",
        controller_offset_reset="latest",
        controller_start_grace_s=0.0,
        drain_timeout_s=5.0,
    )


@pytest.fixture(scope="module")
async def db(ctrl_settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """The module's database, dropped at the end."""
    client = make_mongo_client(ctrl_settings)
    yield database(client, ctrl_settings)
    await client.drop_database(ctrl_settings.mongo_db)
    await client.close()


@pytest.fixture(scope="module")
async def controller(ctrl_settings: Settings) -> AsyncIterator[RunningController]:
    """A controller on free ports."""
    running = await start(ctrl_settings, grpc_port=0, http_port=0)
    await running.wait_ready()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def channel(controller: RunningController) -> AsyncIterator[aio.Channel]:
    """A gRPC channel to the controller."""
    async with aio.insecure_channel(f"127.0.0.1:{controller.grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: aio.Channel, settings: Settings) -> chat_pb2_grpc.ControllerAsyncStub:
    """The Controller client stub, sending the internal token like a relay."""
    return authed_stub(channel, settings.internal_token)


def _team(team_id: str, members: list[str], *, admins: list[str], active: bool) -> Document:
    return {
        "_id": team_id,
        "name": f"team {team_id[:6]}",
        "icon": "",
        "active": active,
        "meta_tags": ["test"],
        "members": members,
        "admins": admins,
        "super_admin": admins[0],
        "doc": datetime.now(UTC),
    }


async def test_memberships_and_members_come_from_what_management_wrote(
    stub: chat_pb2_grpc.ControllerAsyncStub, db: AsyncDatabase[Document]
) -> None:
    """GetMemberships lists the user's teams and whether each is active (the membership index);
    GetMembers a team's members (the team document)."""
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    t1, t2, t3 = (uuid.uuid4().hex for _ in range(3))
    for team in (
        _team(t1, [alice, bob], admins=[alice], active=True),
        _team(t2, [bob], admins=[bob], active=False),
        _team(t3, [alice], admins=[alice], active=True),
    ):
        await store_team(db, team)
    reply = await stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id=bob))
    got = {(m.channel_id, m.active) for m in reply.memberships}
    assert got == {(t1, True), (t2, False)}

    members = await stub.GetMembers(chat_pb2.GetMembersRequest(channel_id=t1))
    assert (sorted(members.user_ids), members.active, members.found) == (
        sorted([alice, bob]),
        True,
        True,
    )
    inactive = await stub.GetMembers(chat_pb2.GetMembersRequest(channel_id=t2))
    assert (inactive.found, inactive.active) == (True, False)
    missing = await stub.GetMembers(chat_pb2.GetMembersRequest(channel_id=uuid.uuid4().hex))
    assert not missing.found
    nobody = await stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id=uuid.uuid4().hex))
    assert list(nobody.memberships) == []


async def test_a_batch_of_handshake_lookups_matches_single_ones(
    stub: chat_pb2_grpc.ControllerAsyncStub, db: AsyncDatabase[Document]
) -> None:
    """GetMembershipsBatch over the real database answers each user exactly as GetMemberships
    does, in the request's order."""
    users = [uuid.uuid4().hex for _ in range(5)]
    teams = [uuid.uuid4().hex for _ in range(3)]
    await store_team(db, _team(teams[0], users[:3], admins=[users[0]], active=True))
    await store_team(db, _team(teams[1], users[2:], admins=[users[2]], active=False))
    await store_team(db, _team(teams[2], [users[1]], admins=[users[1]], active=True))
    asked = [users[2], users[4], users[0], users[2], users[1], uuid.uuid4().hex]
    batch = await stub.GetMembershipsBatch(chat_pb2.GetMembershipsBatchRequest(user_ids=asked))
    singles = [await stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id=u)) for u in asked]
    assert list(batch.replies) == singles
    assert [len(r.memberships) for r in batch.replies] == [2, 1, 1, 2, 2, 0]


async def test_attachment_check_against_stored_attachments(
    stub: chat_pb2_grpc.ControllerAsyncStub, db: AsyncDatabase[Document]
) -> None:
    """CheckAttachment is ok only for the uploader, a ready attachment, its team and kind."""
    team, other = uuid.uuid4().hex, uuid.uuid4().hex
    ready, pending = uuid.uuid4().hex, uuid.uuid4().hex
    uploader, someone = uuid.uuid4().hex, uuid.uuid4().hex
    common = {"team_id": team, "kind": "audio", "size": 10, "uploader": uploader}
    await db.attachments.insert_many(
        [
            {"_id": ready, "status": "ready", **common},
            {"_id": pending, "status": "pending", **common},
        ]
    )

    async def check(
        attachment_id: str, channel_id: str, kind: int, sender: str = uploader
    ) -> tuple[bool, str]:
        reply = await stub.CheckAttachment(
            chat_pb2.CheckAttachmentRequest(
                attachment_id=attachment_id,
                channel_id=channel_id,
                type=chat_pb2.MessageType.ValueType(kind),
                sender=sender,
            )
        )
        return reply.ok, reply.reason

    audio, file = chat_pb2.MESSAGE_TYPE_AUDIO, chat_pb2.MESSAGE_TYPE_FILE
    assert await check(ready, team, audio) == (True, "")
    assert await check(ready, team, audio, someone) == (False, "not_uploader")
    assert await check(ready, other, audio) == (False, "wrong_team")
    assert await check(pending, team, audio) == (False, "not_ready")
    assert await check(ready, team, file) == (False, "wrong_type")
    assert await check(uuid.uuid4().hex, team, audio) == (False, "not_found")


@pytest.mark.parametrize("bad", ['{"$ne": null}', "", "a" * 65, "x.y"])
async def test_operator_shaped_ids_are_invalid_arguments(
    stub: chat_pb2_grpc.ControllerAsyncStub, bad: str
) -> None:
    """Ids that are not plain short tokens never reach the database."""
    with pytest.raises(aio.AioRpcError) as err:
        await stub.GetMembers(chat_pb2.GetMembersRequest(channel_id=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_grpc_health_serves_once_consuming(channel: aio.Channel) -> None:
    """The standard health service says SERVING for the server and the Controller service."""
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "chat.v1.Controller"):
        # Health is re-checked every second; give it a few rounds.
        for _ in range(50):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_ops_endpoints(controller: RunningController) -> None:
    """/healthz, /readyz and /metrics answer on the side HTTP port."""
    base = f"http://127.0.0.1:{controller.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
    for name in (
        "controller_batch_records",
        "controller_persist_seconds",
        "controller_deliveries_total",
        "controller_dropped_streams_total",
        "controller_dlq_records_total",
        "controller_messages_total",
        "controller_consumer_lag",
    ):
        assert name in text


class _GrpcServerPorts:
    """A grpc.aio server that remembers the ports it bound (everything else passes through)."""

    def __init__(self, inner: aio.Server) -> None:
        self._inner = inner
        self.ports: list[int] = []

    def add_insecure_port(self, address: str) -> int:
        port = self._inner.add_insecure_port(address)
        self.ports.append(port)
        return port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_start_that_fails_half_way_closes_what_it_opened(
    ctrl_settings: Settings,
    db: AsyncDatabase[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the HTTP port is taken, start() fails after the database, the producer, the gRPC
    server and the consumer were up, and closes all of them: no client, listener or task is left."""
    opened: dict[str, list[Any]] = {"mongo": [], "producer": [], "consumer": [], "grpc": []}

    def recording(factory: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def make(*args: Any, **kwargs: Any) -> Any:
            made = factory(*args, **kwargs)
            opened[kind].append(made)
            return made

        return make

    monkeypatch.setattr(
        controller_server, "make_mongo_client", recording(make_mongo_client, "mongo")
    )
    monkeypatch.setattr(controller_server, "make_producer", recording(make_producer, "producer"))
    monkeypatch.setattr(
        controller_server,
        "make_controller_consumer",
        recording(make_controller_consumer, "consumer"),
    )
    grpc_server = aio.server
    monkeypatch.setattr(
        aio,  # the grpc.aio module the controller's wiring calls
        "server",
        recording(lambda *a, **kw: _GrpcServerPorts(grpc_server(*a, **kw)), "grpc"),
    )
    # A group of its own: joining the module controller's group would take its partitions.
    own = dataclasses.replace(ctrl_settings, controller_group_id=f"test-ctrl-{uuid.uuid4().hex}")
    before = asyncio.all_tasks()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="address already in use"):
            await start(own, grpc_port=0, http_port=busy.getsockname()[1])

    # Two database clients: the service's, and the bucket migration's without a socket timeout.
    assert {kind: len(made) for kind, made in opened.items()} == {
        "mongo": 2,  # the service's client and the start-up migration's (migrate.py)
        "producer": 1,
        "consumer": 1,
        "grpc": 1,
    }
    for client in opened["mongo"]:
        with pytest.raises(InvalidOperation):
            await client.admin.command("ping")
    assert opened["producer"][0]._closed, "dead-letter producer left open"
    assert opened["consumer"][0]._closed, "consumer left open (still in its group)"
    (grpc_port,) = opened["grpc"][0].ports
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", grpc_port), timeout=5).close()
    current = asyncio.current_task()
    leftover = {t for t in asyncio.all_tasks() - before if not t.done() and t is not current}
    await asyncio.sleep(0.5)  # other instances' short fetches end; a leaked task stays
    leftover = {t for t in leftover if not t.done()}
    assert not leftover, leftover
