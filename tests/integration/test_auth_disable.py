"""Disabling a user, or logging out: REST refused at once, sessions and sockets ended.

The command runs as a subprocess against the stack's FerretDB and Kafka, exactly as an operator
would run it; auth and management run in-process (``tests/integration/management_support.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from chatcore.kafka import EVENTS_TOPIC, topic_specs
from chatcore.proto.chat.v1 import chat_pb2
from services.auth.server import start as start_auth
from tests.conftest import REPO
from tests.integration.management_support import PASSWORD, Stack
from tests.integration.ports import free_port


@dataclass(frozen=True)
class _Login:
    user_id: str
    email: str
    access_token: str
    refresh_token: str


async def _login(stack: Stack) -> _Login:
    account = await stack.account()
    reply = await stack.api.call(
        "POST",
        f"{stack.auth_url}/v1/auth/login",
        body={"email": account.email, "password": PASSWORD},
    )
    assert reply.status == 200, reply.body
    return _Login(
        account.id, account.email, reply.data["access_token"], reply.data["refresh_token"]
    )


async def _command(stack: Stack, *args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.auth",
        *args,
        cwd=REPO,
        env={**os.environ, **stack.settings.to_env(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class _UserEventTap:
    """Reads chat.events.v1 from the end offsets seen when it was opened, without a group."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def first(self, user_id: str, timeout_s: float = 30.0) -> chat_pb2.MembershipEvent:
        """The first event keyed ``user_id`` (fails at the deadline)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key == user_id.encode():
                        return chat_pb2.MembershipEvent.FromString(record.value)
        raise AssertionError(f"no event for user {user_id} within {timeout_s} s")


async def _open_tap(stack: Stack) -> tuple[AIOKafkaConsumer, _UserEventTap]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    (spec,) = [s for s in topic_specs(stack.settings) if s.name == EVENTS_TOPIC]
    partitions = [TopicPartition(EVENTS_TOPIC, p) for p in range(spec.partitions)]
    consumer.assign(partitions)
    for tp, offset in (await consumer.end_offsets(partitions)).items():
        consumer.seek(tp, offset)
    return consumer, _UserEventTap(consumer)


async def test_disable_command_ends_rest_access_sessions_and_announces(stack: Stack) -> None:
    """After `disable` the old unexpired token fails everywhere, refresh fails, an event is out."""
    victim, bystander = await _login(stack), await _login(stack)
    me = f"{stack.auth_url}/v1/auth/me"
    assert (await stack.api.call("GET", me, token=victim.access_token)).status == 200
    assert (
        await stack.api.call("GET", f"{stack.url}/v1/teams", token=victim.access_token)
    ).status == 200

    consumer, tap = await _open_tap(stack)
    try:
        code, out, err = await _command(stack, "disable", "--email", victim.email.upper())
        assert code == 0, err
        assert victim.user_id in out
        event = await tap.first(victim.user_id)
    finally:
        await consumer.stop()
    assert event.change == chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED
    assert (event.channel_id, event.user_id) == ("", victim.user_id)

    # The very next calls with the same, unexpired access token fail: auth and management.
    reply = await stack.api.call("GET", me, token=victim.access_token)
    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"
    assert "disabled" in reply.body["error"]["message"]
    teams = await stack.api.call("GET", f"{stack.url}/v1/teams", token=victim.access_token)
    assert teams.status == 401
    refresh = await stack.api.call(
        "POST", f"{stack.auth_url}/v1/auth/refresh", body={"refresh_token": victim.refresh_token}
    )
    assert refresh.status == 401
    login = await stack.api.call(
        "POST",
        f"{stack.auth_url}/v1/auth/login",
        body={"email": victim.email, "password": PASSWORD},
    )
    assert login.status == 403
    # Nobody else is affected.
    assert (await stack.api.call("GET", me, token=bystander.access_token)).status == 200

    code, out, err = await _command(stack, "enable", "--email", victim.email)
    assert code == 0, err
    login = await stack.api.call(
        "POST",
        f"{stack.auth_url}/v1/auth/login",
        body={"email": victim.email, "password": PASSWORD},
    )
    assert login.status == 200
    # Enabling does not bring the revoked session back.
    refresh = await stack.api.call(
        "POST", f"{stack.auth_url}/v1/auth/refresh", body={"refresh_token": victim.refresh_token}
    )
    assert refresh.status == 401


async def test_disable_without_kafka_exits_non_zero_and_a_rerun_completes(stack: Stack) -> None:
    """Kafka unreachable: the command fails saying so, REST is cut anyway, a re-run completes."""
    victim = await _login(stack)
    code, out, err = await _command(
        stack,
        "disable",
        "--email",
        victim.email,
        "--kafka-timeout",
        "3",
        CHAT_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        CHAT_KAFKA_REQUEST_TIMEOUT_MS="1000",
    )
    assert code == 1
    assert "INCOMPLETE" in err
    assert "did not acknowledge" in err
    assert out == ""
    reply = await stack.api.call("GET", f"{stack.auth_url}/v1/auth/me", token=victim.access_token)
    assert reply.status == 401

    consumer, tap = await _open_tap(stack)
    try:
        code, _, err = await _command(stack, "disable", "--email", victim.email)
        assert code == 0, err
        event = await tap.first(victim.user_id)
    finally:
        await consumer.stop()
    assert event.change == chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED


async def test_disable_of_an_unknown_or_malformed_email_fails_cleanly(stack: Stack) -> None:
    """No such account, or no email at all: exit code 2 and a message, nothing published."""
    code, _, err = await _command(
        stack, "disable", "--email", f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    )
    assert code == 2
    assert "no account" in err
    code, _, err = await _command(stack, "disable", "--email", "not an email")
    assert code == 2
    assert "not a valid email" in err


async def test_logout_while_kafka_is_away_ends_rest_access_and_is_announced_later(
    stack: Stack,
) -> None:
    """An auth instance without Kafka logs out at once and every service refuses the token;
    the session_ended event goes out from the outbox once an instance reaches Kafka."""
    phone, laptop = await _login(stack), await _login(stack)
    lost = dataclasses.replace(
        stack.settings,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_request_timeout_ms=1000,
        outbox_send_timeout_s=1.0,
    )
    cut_off = await start_auth(lost, port=0)
    consumer, tap = await _open_tap(stack)
    try:
        url = f"http://127.0.0.1:{cut_off.port}"
        started = asyncio.get_running_loop().time()
        reply = await stack.api.call(
            "POST", f"{url}/v1/auth/logout", body={"refresh_token": phone.refresh_token}
        )
        assert reply.status == 204
        assert asyncio.get_running_loop().time() - started < 2.0
        for base in (url, stack.auth_url):
            me = await stack.api.call("GET", f"{base}/v1/auth/me", token=phone.access_token)
            assert me.status == 401
            assert "session ended" in me.body["error"]["message"]
        teams = await stack.api.call("GET", f"{stack.url}/v1/teams", token=phone.access_token)
        assert teams.status == 401
        mine = await stack.api.call("GET", f"{stack.url}/v1/teams", token=laptop.access_token)
        assert mine.status == 200
        # The stack's own auth instance, which reaches Kafka, publishes it on its next pass.
        event = await tap.first(phone.user_id)
    finally:
        await consumer.stop()
        await cut_off.stop()
    assert event.change == chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED
    assert (event.user_id, event.channel_id) == (phone.user_id, "")
    assert event.session_id
