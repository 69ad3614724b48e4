"""The Controller gRPC service over a real local grpc.aio server, with in-memory dependencies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
import structlog
from grpc import aio
from prometheus_client import CollectorRegistry

from chatcore.internal_auth import InternalTokenInterceptor, call_metadata
from chatcore.proto.chat.v1 import chat_pb2, chat_pb2_grpc
from services.controller.directory import AttachmentView, ShutOut, TeamMembers
from services.controller.hooks import ControllerHooks
from services.controller.metrics import ControllerMetrics
from services.controller.registry import Routed, SubscriptionRegistry
from services.controller.servicer import ControllerServicer
from services.controller.streams import CloseReason, StreamHub
from tests.internal_grpc import authed_stub
from tests.unit.controller_fakes import MemoryDirectory, chat_message, membership_events

T1 = "a" * 32
T2 = "b" * 32
TOKEN = "internal-test-token-0123456789"


class _Gate:
    """A subscription hook the test opens by hand."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = 0

    async def __call__(self) -> None:
        self.waiting += 1
        await self.open.wait()
        self.waiting -= 1


@dataclass
class _Server:
    hub: StreamHub
    directory: MemoryDirectory
    stub: chat_pb2_grpc.ControllerAsyncStub
    gate: _Gate
    channel: aio.Channel


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    """A Controller service on a free port, its hub holding at most 2 batches per stream."""
    metrics = ControllerMetrics.create(CollectorRegistry())
    hub = StreamHub(SubscriptionRegistry(max_batch_bytes=1 << 20), capacity=2, metrics=metrics)
    directory = MemoryDirectory()
    gate = _Gate()
    grpc_server = aio.server(interceptors=[InternalTokenInterceptor(TOKEN)])
    servicer = ControllerServicer(hub, directory, ControllerHooks(before_subscription_change=gate))
    chat_pb2_grpc.add_ControllerServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    stub = authed_stub(channel, TOKEN)
    try:
        yield _Server(hub, directory, stub, gate, channel)
    finally:
        await channel.close()
        await grpc_server.stop(None)


async def _read(call: object) -> chat_pb2.DeliveryBatch:
    batch = await asyncio.wait_for(call.read(), 2)  # type: ignore[attr-defined]
    assert isinstance(batch, chat_pb2.DeliveryBatch)
    return batch


def _delivery(channel_id: str, seq: int) -> Routed:
    persisted = chat_pb2.PersistedMessage(
        message=chat_message(channel_id, msg_id=f"m{seq}"), seq=seq
    )
    return Routed.to_channel(channel_id, chat_pb2.Delivery(message=persisted))


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_subscribed_stream_receives_its_channels_only(server: _Server) -> None:
    """A stream receives deliveries of channels it added, nothing of others, none after remove."""
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=1))
    assert (await _read(call)).confirmed == 1
    server.hub.publish([_delivery(T2, 1), _delivery(T1, 2)])
    batch = await _read(call)
    assert [d.message.seq for d in batch.deliveries] == [2]
    await call.write(chat_pb2.SubscribeRequest(add=[T2], remove=[T1], request_id=2))
    assert (await _read(call)).confirmed == 2
    server.hub.publish([_delivery(T1, 3), _delivery(T2, 4)])
    batch = await _read(call)
    assert [d.message.seq for d in batch.deliveries] == [4]
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), 2) is aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await _until(lambda: len(server.hub) == 0)


async def test_first_request_without_relay_id_is_refused(server: _Server) -> None:
    """The first request must name the relay: INVALID_ARGUMENT otherwise."""
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(add=[T1]))
    assert await asyncio.wait_for(call.code(), 2) == grpc.StatusCode.INVALID_ARGUMENT


async def test_operator_shaped_channel_id_ends_the_stream(server: _Server) -> None:
    """A later request naming a non-id channel ends the call with INVALID_ARGUMENT."""
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1"))
    await call.write(chat_pb2.SubscribeRequest(add=['{"$ne": null}']))
    assert await asyncio.wait_for(call.code(), 2) == grpc.StatusCode.INVALID_ARGUMENT
    await _until(lambda: len(server.hub) == 0)


async def test_stream_that_falls_behind_is_dropped_with_resource_exhausted(
    server: _Server,
) -> None:
    """Publishing past a stream's queue bound ends its call with RESOURCE_EXHAUSTED."""
    slow = server.stub.Subscribe()
    await slow.write(chat_pb2.SubscribeRequest(relay_id="relay-slow", add=[T1]))
    await _until(lambda: len(server.hub) == 1)
    # Three publishes without yielding: the queue (2) overflows before the server can drain it.
    for seq in range(3):
        server.hub.publish([_delivery(T1, seq)])
    assert await asyncio.wait_for(slow.code(), 2) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(server.hub) == 0


async def test_memberships_members_and_attachments(server: _Server) -> None:
    """The authorization questions are answered from the directory."""
    server.directory.teams[T1] = {
        "members": ["u1", "u2"],
        "admins": ["u1"],
        "super_admin": "u1",
        "active": True,
    }
    server.directory.teams[T2] = {
        "members": ["u2"],
        "admins": [],
        "super_admin": "u3",
        "active": False,
    }
    reply = await server.stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id="u2"))
    assert sorted((m.channel_id, m.active) for m in reply.memberships) == [
        (T1, True),
        (T2, False),
    ]
    mine = await server.stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id="u1"))
    assert [m.channel_id for m in mine.memberships] == [T1]
    members = await server.stub.GetMembers(chat_pb2.GetMembersRequest(channel_id=T1))
    assert (list(members.user_ids), members.active, members.found) == (["u1", "u2"], True, True)
    missing = await server.stub.GetMembers(chat_pb2.GetMembersRequest(channel_id="c" * 32))
    assert not missing.found

    server.directory.attachments["att1"] = AttachmentView("att1", T1, "image", "ready", "u1")
    server.directory.attachments["att2"] = AttachmentView("att2", T1, "image", "pending", "u1")

    async def check(
        attachment_id: str, channel_id: str, kind: int, sender: str = "u1"
    ) -> tuple[bool, str]:
        r = await server.stub.CheckAttachment(
            chat_pb2.CheckAttachmentRequest(
                attachment_id=attachment_id,
                channel_id=channel_id,
                type=chat_pb2.MessageType.ValueType(kind),
                sender=sender,
            )
        )
        return r.ok, r.reason

    assert await check("att1", T1, chat_pb2.MESSAGE_TYPE_IMAGE) == (True, "")
    assert await check("att1", T1, chat_pb2.MESSAGE_TYPE_IMAGE, "u2") == (False, "not_uploader")
    assert await check("nope", T1, chat_pb2.MESSAGE_TYPE_IMAGE) == (False, "not_found")
    assert await check("att1", T2, chat_pb2.MESSAGE_TYPE_IMAGE) == (False, "wrong_team")
    assert await check("att2", T1, chat_pb2.MESSAGE_TYPE_IMAGE) == (False, "not_ready")
    assert await check("att1", T1, chat_pb2.MESSAGE_TYPE_VIDEO) == (False, "wrong_type")
    with pytest.raises(aio.AioRpcError) as text_type:
        await check("att1", T1, chat_pb2.MESSAGE_TYPE_TEXT)
    assert text_type.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_batch_of_users_is_answered_in_its_order(server: _Server) -> None:
    """GetMembershipsBatch answers each user as GetMemberships would, in the request's order,
    a repeated user twice, a disabled one as disabled."""
    server.directory.teams[T1] = {"members": ["u1", "u2"], "admins": [], "active": True}
    server.directory.teams[T2] = {"members": ["u2"], "admins": [], "active": False}
    server.directory.disabled_users.add("u3")
    reply = await server.stub.GetMembershipsBatch(
        chat_pb2.GetMembershipsBatchRequest(user_ids=["u2", "u3", "u1", "u2", "nobody"])
    )
    single = await server.stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id="u2"))
    assert reply.replies[0] == single
    assert [[m.channel_id for m in r.memberships] for r in reply.replies] == [
        [T1, T2],
        [],
        [T1],
        [T1, T2],
        [],
    ]
    assert [r.disabled for r in reply.replies] == [False, True, False, False, False]


@pytest.mark.parametrize("user_ids", [[], ["u1", '{"$ne": null}'], ["u1", "$where"], ["u"] * 257])
async def test_a_bad_batch_is_refused_whole_before_any_query(
    server: _Server, user_ids: list[str]
) -> None:
    """An empty batch, one bad id among good ones, or more than 256 users: INVALID_ARGUMENT,
    and the directory is never asked."""
    with pytest.raises(aio.AioRpcError) as err:
        await server.stub.GetMembershipsBatch(
            chat_pb2.GetMembershipsBatchRequest(user_ids=user_ids)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.directory.queries == []


@pytest.mark.parametrize("user_id", ['{"$ne": null}', "", "x" * 65, "a.b", "$where"])
async def test_bad_ids_never_reach_the_directory(server: _Server, user_id: str) -> None:
    """Ids that are not short plain tokens answer INVALID_ARGUMENT before any query."""
    with pytest.raises(aio.AioRpcError) as err:
        await server.stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id=user_id))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.directory.queries == []


async def test_database_down_answers_unavailable(server: _Server) -> None:
    """A directory outage maps to UNAVAILABLE so relays retry."""
    server.directory.down = True
    with pytest.raises(aio.AioRpcError) as err:
        await server.stub.GetMembers(chat_pb2.GetMembersRequest(channel_id=T1))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_correlation_id_from_metadata_reaches_the_log_context(server: _Server) -> None:
    """``x-correlation-id`` metadata is bound into the log context while the call runs."""
    seen: list[object] = []
    original = server.directory.members

    async def spy(channel_id: str) -> TeamMembers | None:
        seen.append(structlog.contextvars.get_contextvars().get("correlation_id"))
        return await original(channel_id)

    server.directory.members = spy  # type: ignore[method-assign]
    await server.stub.GetMembers(
        chat_pb2.GetMembersRequest(channel_id=T1), metadata=(("x-correlation-id", "corr-42"),)
    )
    assert seen == ["corr-42"]


async def test_calls_without_the_internal_token_are_refused(server: _Server) -> None:
    """No token, or a wrong one: UNAUTHENTICATED before any handler runs or reads anything."""
    raw: chat_pb2_grpc.ControllerAsyncStub = chat_pb2_grpc.ControllerStub(server.channel)
    for metadata in ((), (call_metadata("wrong-token-0123456789"),)):
        with pytest.raises(aio.AioRpcError) as err:
            await raw.GetMembers(chat_pb2.GetMembersRequest(channel_id=T1), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call = raw.Subscribe(metadata=metadata)
        # The refusal may already have ended the call before the first write gets there.
        with contextlib.suppress(aio.AioRpcError, asyncio.InvalidStateError):
            await call.write(chat_pb2.SubscribeRequest(relay_id="intruder", add=[T1], request_id=1))
        assert await asyncio.wait_for(call.code(), 2) == grpc.StatusCode.UNAUTHENTICATED
    assert server.directory.queries == []
    assert len(server.hub) == 0


async def test_confirmation_comes_after_earlier_deliveries_and_before_later_ones(
    server: _Server,
) -> None:
    """A held-back subscription is confirmed only once applied, in order with the deliveries."""
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=1))
    assert (await _read(call)).confirmed == 1
    server.gate.open.clear()
    await call.write(chat_pb2.SubscribeRequest(add=[T2], request_id=2))
    await _until(lambda: server.gate.waiting == 1)
    # Published while the change is held back: T1 goes out, T2 reaches nobody.
    server.hub.publish([_delivery(T1, 1), _delivery(T2, 2)])
    assert [d.message.seq for d in (await _read(call)).deliveries] == [1]
    server.gate.open.set()
    confirmed = await _read(call)
    assert (confirmed.confirmed, list(confirmed.deliveries)) == (2, [])
    server.hub.publish([_delivery(T2, 3)])
    assert [d.message.seq for d in (await _read(call)).deliveries] == [3]
    await call.done_writing()


async def test_first_confirmation_says_whether_fan_out_started_before(server: _Server) -> None:
    """A stream opened after the controller fanned out is told it may have missed some."""
    first = server.stub.Subscribe()
    await first.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=7))
    reply = await _read(first)
    assert (reply.confirmed, reply.fanned_out_before) == (7, False)
    server.hub.publish([_delivery(T1, 1)])
    await _read(first)
    late = server.stub.Subscribe()
    await late.write(chat_pb2.SubscribeRequest(relay_id="relay-2", add=[T1], request_id=1))
    reply = await _read(late)
    assert (reply.confirmed, reply.fanned_out_before) == (1, True)
    await first.done_writing()
    await late.done_writing()


async def test_shutdown_flushes_the_queue_then_says_goodbye(server: _Server) -> None:
    """A graceful shutdown sends what was queued, then a goodbye batch, then UNAVAILABLE."""
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=1))
    assert (await _read(call)).confirmed == 1
    server.hub.publish([_delivery(T1, 1)])
    server.hub.close_all(CloseReason.SHUTDOWN, "bye", drain=True)
    assert [d.message.seq for d in (await _read(call)).deliveries] == [1]
    assert (await _read(call)).goodbye
    assert await asyncio.wait_for(call.code(), 2) == grpc.StatusCode.UNAVAILABLE


async def test_disabled_account_gets_no_memberships(server: _Server) -> None:
    """GetMemberships says a disabled account is disabled and lists nothing for it."""
    server.directory.teams[T1] = {"members": ["u1"], "admins": [], "super_admin": "u1"}
    server.directory.teams[T1]["active"] = True
    server.directory.disabled_users.add("u1")
    reply = await server.stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id="u1"))
    assert reply.disabled
    assert list(reply.memberships) == []


async def test_memberships_list_the_users_ended_logins(server: _Server) -> None:
    """GetMemberships and its batch carry each user's ended logins, for the relay to refuse."""
    server.directory.teams[T1] = {"members": ["u1", "u2"], "admins": [], "super_admin": "u1"}
    server.directory.teams[T1]["active"] = True
    server.directory.ended["u1"] = ("a" * 32, "b" * 32)
    reply = await server.stub.GetMemberships(chat_pb2.GetMembershipsRequest(user_id="u1"))
    assert list(reply.ended_sessions) == ["a" * 32, "b" * 32]
    assert [m.channel_id for m in reply.memberships] == [T1]
    batch = await server.stub.GetMembershipsBatch(
        chat_pb2.GetMembershipsBatchRequest(user_ids=["u2", "u1"])
    )
    assert [list(r.ended_sessions) for r in batch.replies] == [[], ["a" * 32, "b" * 32]]


async def test_a_new_stream_hears_the_state_after_its_confirmation(server: _Server) -> None:
    """A relay subscribing is told every disabled account and ended login after its confirmation."""
    server.directory.disabled_users.add("u1")
    server.directory.ended["u2"] = ("a" * 32,)
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=1))
    assert (await _read(call)).confirmed == 1
    told = await _read(call)
    assert membership_events([told]) == [
        ("u1", chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED, ""),
        ("u2", chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED, "a" * 32),
    ]
    await call.done_writing()


async def test_with_the_database_away_the_state_follows_once_it_is_back(server: _Server) -> None:
    """The stream opens while the database is down; the state comes once it answers again."""
    server.directory.down = True
    server.directory.ended["u2"] = ("a" * 32,)
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=1))
    assert (await _read(call)).confirmed == 1
    await asyncio.sleep(0.2)
    server.directory.down = False
    told = await _read(call)
    assert membership_events([told]) == [("u2", chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED, "a" * 32)]
    await call.done_writing()


async def test_an_unexpected_failure_reading_the_state_is_retried_not_kept(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug-shaped error reading the state is logged and tried again; the stream lives on."""
    server.directory.ended["u2"] = ("a" * 32,)
    real = server.directory.shut_out
    failures = [RuntimeError("once")]

    async def flaky() -> ShutOut:
        if failures:
            raise failures.pop()
        return await real()

    monkeypatch.setattr(server.directory, "shut_out", flaky)
    call = server.stub.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(relay_id="relay-1", add=[T1], request_id=1))
    assert (await _read(call)).confirmed == 1
    told = await _read(call)
    assert membership_events([told]) == [("u2", chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED, "a" * 32)]
    server.hub.publish([_delivery(T1, 1)])
    assert [d.message.seq for d in (await _read(call)).deliveries] == [1]
    await call.done_writing()
    await _until(lambda: len(server.hub) == 0)
