"""A second local stack, home under a private (0700) folder, supervised: it comes up and heals.

Started and stopped through the command line exactly as ``make stack-up`` / ``make clean`` do,
on ports of its own, with low edge limits so the real nginx's caps can be reached. As root its
PostgreSQL data lives outside the home (the postgres user cannot enter a 0700 folder).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from websockets.exceptions import ConnectionClosed, WebSocketException

from chatclient import ChatClient, SendFailed, login, register
from chatclient.http import presence
from chatclient.synced import SyncedClient
from deploy.local.datadirs import shared_folder
from deploy.local.processes import http_ok
from tests.integration.frames import frames_until
from tests.integration.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "second stack password"
WS_CAP = 3
_STATUS = re.compile(r"^(\S+)\s+(\S+)\s+(?:pid (\d+)|-)\s+restarts (\d+)")
_PORTS = (
    "KAFKA",
    "KAFKA_CONTROLLER",
    "MONGO",
    "POSTGRES",
    "FERRETDB_DEBUG",
    "S3",
    "CLAMD",
    "NGINX",
    "AUTH",
    "MANAGEMENT",
    "CONTROLLER_GRPC",
    "CONTROLLER_HTTP",
)


@dataclasses.dataclass(frozen=True)
class Line:
    state: str
    pid: int | None
    restarts: int


@dataclasses.dataclass
class SecondStack:
    home: Path
    env: dict[str, str]

    def port(self, name: str) -> int:
        return int(self.env[f"CHATSTACK_{name}_PORT"])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port('NGINX')}"

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deploy.local.stack", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def status(self) -> dict[str, Line]:
        result = self.cli("status", timeout_s=30)
        assert result.returncode == 0, result.stderr
        lines = {}
        for raw in result.stdout.splitlines():
            match = _STATUS.match(raw)
            if match:
                name, state, pid, restarts = match.groups()
                lines[name] = Line(state, int(pid) if pid else None, int(restarts))
        return lines

    def pid(self, name: str) -> int:
        return int((self.home / "run" / f"{name}.pid").read_text())

    async def restarted(self, name: str, old_pid: int, timeout_s: float = 90) -> Line:
        """Poll ``stack status`` until ``name`` is ready again under a new pid."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = (await asyncio.to_thread(self.status)).get(name)
            if line is not None and line.state == "ready" and line.pid not in (None, old_pid):
                return line
            assert time.monotonic() < deadline, f"{name} not back: {line}"
            await asyncio.sleep(0.5)


def _stack_env(home: Path) -> dict[str, str]:
    # Nothing of the stack the suite runs against may leak into this one.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHAT_", "CHATSTACK_")) or k == "CHATSTACK_CACHE"
    }
    *ports, relay_1, relay_2 = free_ports(len(_PORTS) + 2)
    env.update(
        {f"CHATSTACK_{name}_PORT": str(port) for name, port in zip(_PORTS, ports, strict=True)}
    )
    env.update(
        {
            "CHATSTACK_HOME": str(home),
            "CHATSTACK_RELAY_PORTS": f"{relay_1},{relay_2}",
            "CHATSTACK_MESSAGES_PARTITIONS": "2",
            "CHATSTACK_NGINX_WS_CONNECTIONS_PER_ADDRESS": str(WS_CAP),
            "CHATSTACK_NGINX_API_RATE": "5",
            "CHATSTACK_NGINX_API_BURST": "40",
        }
    )
    return env


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondStack]:
    """The second stack, up; ``make clean``'s equivalent afterwards."""
    private = tmp_path_factory.mktemp("private")
    private.chmod(0o700)
    stack = SecondStack(home=private / "home", env=_stack_env(private / "home"))
    started = stack.cli("up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "Traceback" not in started.stdout + started.stderr
        ready_lines = [line for line in started.stdout.splitlines() if ": ready in " in line]
        assert len(ready_lines) == len(stack.status())
        yield stack
    finally:
        cleaned = stack.cli("clean")
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        assert not stack.home.exists()
        assert not shared_folder(stack.home, Path("/var/lib/chatstack")).exists()


def _mongo(port: int, timeout_ms: int = 5000) -> MongoClient[dict[str, Any]]:
    return MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=timeout_ms)


def _ping(port: int) -> bool:
    with _mongo(port) as mongo:
        return bool(mongo.admin.command("ping")["ok"])


def _insert(port: int, marker: str) -> None:
    with _mongo(port) as mongo:
        mongo.stack_test.kept.insert_one({"_id": marker})


def _find(port: int, marker: str) -> dict[str, Any] | None:
    """The marker document, or None while FerretDB cannot reach PostgreSQL yet."""
    try:
        with _mongo(port, timeout_ms=2000) as mongo:
            return mongo.stack_test.kept.find_one({"_id": marker})
    except PyMongoError:
        return None


def _get_text(url: str) -> str:
    """The body of a 200 answer (urllib raises on anything else)."""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the test's own URL
        return str(resp.read().decode())


async def test_comes_up_from_a_home_under_a_private_folder(second: SecondStack) -> None:
    """Every component is ready; Kafka, PostgreSQL, FerretDB and auth (via nginx) answer."""
    assert second.home.parent.stat().st_mode & 0o777 == 0o700
    lines = second.status()
    assert {"kafka", "postgres", "ferretdb", "auth", "nginx", "relay-1"} <= lines.keys()
    assert {line.state for line in lines.values()} == {"ready"}
    assert {line.restarts for line in lines.values()} == {0}

    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{second.port('KAFKA')}")
    await admin.start()
    try:
        assert "chat.messages.v1" in await admin.list_topics()
    finally:
        await admin.close()
    assert await asyncio.to_thread(_ping, second.port("MONGO"))
    # The internal gRPC secret was generated into this home and handed to the services.
    token_file = second.home / "secrets" / "internal-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    env_lines = (second.home / "env").read_text().splitlines()
    assert f"CHAT_INTERNAL_TOKEN={token_file.read_text().strip()}" in env_lines
    assert await asyncio.to_thread(http_ok, f"{second.base}/v1/auth/jwks")
    # The browser app through nginx, whose workers (nobody, as root) cannot read a private clone.
    page = await asyncio.to_thread(_get_text, f"{second.base}/")
    assert '<script type="module"' in page
    script = re.search(r'src="(/assets/[^"]+\.js)"', page)
    assert script is not None
    assert "createElement" in await asyncio.to_thread(_get_text, second.base + script.group(1))
    if os.geteuid() == 0:
        data = shared_folder(second.home, Path("/var/lib/chatstack")) / "postgres"
        assert (data / "PG_VERSION").exists()
        assert data.owner() == "postgres"
        assert not (second.home / "data" / "postgres").exists()


async def test_relay_killed_with_9_is_restarted_and_counted(second: SecondStack) -> None:
    """kill -9 of a relay: the supervisor restarts it on its port; `status` says restarts 1."""
    old = second.pid("relay-1")
    os.kill(old, signal.SIGKILL)
    line = await second.restarted("relay-1", old)
    assert line.restarts == 1
    relay_port = int(second.env["CHATSTACK_RELAY_PORTS"].split(",")[0])
    assert await asyncio.to_thread(http_ok, f"http://127.0.0.1:{relay_port}/readyz")
    others = {name: ln.restarts for name, ln in second.status().items() if name != "relay-1"}
    assert set(others.values()) == {0}
    log = (second.home / "logs" / "supervisor.log").read_text()
    assert "relay-1: killed by SIGKILL; restart 1 in 0.5s" in log


async def test_postgres_killed_with_9_comes_back_with_its_data(second: SecondStack) -> None:
    """kill -9 of PostgreSQL: restarted with the same data; FerretDB serves it again."""
    port = second.port("MONGO")
    marker = uuid.uuid4().hex
    await asyncio.to_thread(_insert, port, marker)
    old = second.pid("postgres")
    os.kill(old, signal.SIGKILL)
    line = await second.restarted("postgres", old)
    assert line.restarts == 1
    deadline = time.monotonic() + 30
    while (found := await asyncio.to_thread(_find, port, marker)) is None:
        assert time.monotonic() < deadline, "FerretDB did not reach PostgreSQL again"
        await asyncio.sleep(0.5)
    assert found == {"_id": marker}


async def test_kafka_killed_with_9_comes_back_with_its_data(second: SecondStack) -> None:
    """kill -9 of Kafka: restarted with its log intact; a record written before is still there."""
    bootstrap = f"127.0.0.1:{second.port('KAFKA')}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait("chat.signals.v1", b"before the kill", key=b"k")
    finally:
        await producer.stop()
    old = second.pid("kafka")
    os.kill(old, signal.SIGKILL)
    line = await second.restarted("kafka", old, timeout_s=180)
    assert line.restarts == 1
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition("chat.signals.v1", sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        record = await asyncio.wait_for(consumer.getone(), 30)
        assert record.value == b"before the kill"
    finally:
        await consumer.stop()
    assert await asyncio.to_thread(http_ok, f"{second.base}/v1/auth/jwks")


class _Sender:
    """Sends ``count`` numbered messages to a team, one at a time, each until it is acked.

    A message answered with an ``error`` frame, not answered in time, or cut off by a dropped
    socket is sent again with the same ``client_msg_id`` (reconnecting first when the socket is
    gone), as the contract allows: only acks count as promised.
    """

    def __init__(self, ws_url: str, token: str, team: str, count: int) -> None:
        self._ws_url = ws_url
        self._token = token
        self._team = team
        self._count = count
        self._tag = uuid.uuid4().hex[:8]
        self.client: ChatClient | None = None
        self.acked: list[str] = []
        self.retries = 0
        # Sends answered with an error frame (the relay could not store them: retried).
        self.refused = 0

    async def connect(self) -> ChatClient:
        while True:
            try:
                self.client = await ChatClient.connect(self._ws_url, self._token)
                return self.client
            except (OSError, TimeoutError, WebSocketException):
                await asyncio.sleep(0.5)  # the relay is restarting: nginx has no upstream yet

    async def run(self) -> None:
        """Send every message until acked; the socket stays open (``client``) afterwards."""
        client = self.client or await self.connect()
        for i in range(self._count):
            while True:
                try:
                    ack = await client.send(
                        self._team, f"m{i}", client_msg_id=f"{self._tag}-{i}", timeout=20
                    )
                    break
                except (SendFailed, TimeoutError, ConnectionError, ConnectionClosed) as exc:
                    self.retries += 1
                    self.refused += isinstance(exc, SendFailed)
                    if client.close_code is not None:
                        await client.close()
                        client = await self.connect()
                    else:
                        await asyncio.sleep(0.5)
            self.acked.append(ack.id)
            await asyncio.sleep(0.1)  # under the relay's 15 frames/s per socket


async def _team(second: SecondStack, owner: tuple[str, str], *members: str) -> str:
    """A team created through the stack's nginx by ``owner`` (id, token), with ``members``."""
    auth = {"Authorization": f"Bearer {owner[1]}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(f"{second.base}/v1/teams", json={"name": "Kill"}) as resp:
            assert resp.status == 201, await resp.text()
            team = str((await resp.json())["data"]["id"])
        for member in members:
            async with http.post(
                f"{second.base}/v1/teams/{team}/members", json={"user_id": member}
            ) as resp:
                assert resp.status in (200, 201), await resp.text()
    return team


@pytest.mark.parametrize("component", ["controller", "kafka", "kafka-hung", "postgres", "relay"])
async def test_killed_with_9_mid_stream_loses_no_acked_message(
    second: SecondStack, component: str
) -> None:
    """kill -9 mid-stream: restarted by the supervisor; every acked message stored once, shown.

    ``relay`` kills the sender's relay (and a listener's); ``kafka-hung`` stops Kafka until a
    send got an error frame (the relay's produce timed out), then kills it.
    """
    owner, first, other = await _account(second), await _account(second), await _account(second)
    team = await _team(second, owner, first[0], other[0])
    ws_url = second.base.replace("http://", "ws://") + "/v1/ws"
    # Two listeners first, on the two relays (nginx balances by least connections), then the
    # sender, so it shares a relay with one of them: killing the sender's relay drops both.
    listeners = [SyncedClient(ws_url, second.base, user[1]) for user in (first, other)]
    for listener in listeners:
        await listener.start()
    sender = _Sender(ws_url, owner[1], team, 120)
    try:
        relay = str((await sender.connect()).hello["relay"])
        victim = {"relay": relay, "kafka-hung": "kafka"}.get(component, component)
        before = second.status()[victim].restarts
        sending = asyncio.create_task(sender.run())
        while len(sender.acked) < 20:
            assert not sending.done(), sending
            await asyncio.sleep(0.05)
        old = second.pid(victim)
        try:
            if component == "kafka-hung":
                os.kill(old, signal.SIGSTOP)
                deadline = time.monotonic() + 90
                while sender.refused == 0:
                    assert time.monotonic() < deadline, "no send was refused while Kafka hung"
                    await asyncio.sleep(0.2)
        finally:
            os.kill(old, signal.SIGKILL)
        line = await second.restarted(victim, old, timeout_s=180)
        await sending
        assert line.restarts == before + 1
        if component == "relay":
            assert relay in {listener.hellos[0]["relay"] for listener in listeners}
            assert sum(listener.reconnects for listener in listeners) >= 1
            assert sender.retries >= 1

        def shown(listener: SyncedClient) -> bool:
            return {m["id"] for m in listener.timeline.messages(team)} >= set(sender.acked)

        for listener in listeners:
            try:
                await listener.wait_for(functools.partial(shown, listener), 120)
            except TimeoutError:
                missing = set(sender.acked) - {m["id"] for m in listener.timeline.messages(team)}
                raise AssertionError(
                    f"{len(missing)} of {len(sender.acked)} acked messages never shown "
                    f"(resyncs {listener.resyncs}, reconnects {listener.reconnects})"
                ) from None
        orders = [[m["id"] for m in lst.timeline.messages(team)] for lst in listeners]
    finally:
        for listener in listeners:
            await listener.close()
        if sender.client is not None:
            await sender.client.close()
    for order in orders:
        assert sorted(order) == sorted(sender.acked), "a message shown twice, or one never acked"
    stored = await asyncio.to_thread(_stored_ids, second.port("MONGO"), team)
    assert sorted(stored) == sorted(sender.acked), "each acked message is stored exactly once"


async def test_member_removed_while_kafka_is_stopped_loses_access_once_it_is_back(
    second: SecondStack,
) -> None:
    """Removed via REST while Kafka is stopped: 200, event kept; back up, the socket is cut off."""
    owner, member = await _account(second), await _account(second)
    team, lobby = await _team(second, owner, member[0]), await _team(second, owner, member[0])
    relay_port = int(second.env["CHATSTACK_RELAY_PORTS"].split(",")[0])
    url = f"ws://127.0.0.1:{relay_port}/v1/ws"
    # Both on one relay: the owner's socket keeps the team subscribed there once the member's
    # has lost it, so the relay still receives what the member must no longer get.
    boss = _Sender(url, owner[1], team, 3)
    await boss.connect()
    chat = await ChatClient.connect(url, member[1])
    try:
        assert team in chat.hello["channels"]
        kafka = second.pid("kafka")
        os.kill(kafka, signal.SIGSTOP)
        try:
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {owner[1]}"}) as http,
                http.delete(f"{second.base}/v1/teams/{team}/members/{member[0]}") as resp,
            ):
                assert resp.status == 200, await resp.text()
            doc = await asyncio.to_thread(_team_doc, second.port("MONGO"), team)
            assert [(e["user_id"], e["change"]) for e in doc["outbox"]] == [(member[0], "removed")]
        finally:
            os.kill(kafka, signal.SIGCONT)
        removed = await frames_until(chat, lambda f: f.get("type") == "membership", 120)
        assert removed[-1] == {"type": "membership", "channel_id": team, "event": "removed"}
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(_team_doc, second.port("MONGO"), team))["outbox"]:
            assert time.monotonic() < deadline, "the removal never left the outbox"
            await asyncio.sleep(0.5)
        # The team's next messages reach the owner's socket on that relay, then a marker in the
        # lobby reaches the member's: nothing of the team came before it.
        await boss.run()
        assert boss.client is not None
        unseen = set(boss.acked)

        def all_seen(frame: dict[str, Any]) -> bool:
            unseen.discard(str(frame.get("id")))
            return not unseen

        await frames_until(boss.client, all_seen, 60)
        marker = await boss.client.send(lobby, "marker", timeout=20)
        after = await frames_until(chat, lambda f: f.get("id") == marker.id)
        assert [f for f in after if f.get("channel_id") == team] == []
        with pytest.raises(SendFailed) as refused:
            await chat.send(team, "still here?", timeout=20)
        assert refused.value.code == "forbidden"
    finally:
        await chat.close()
        if boss.client is not None:
            await boss.client.close()


def _team_doc(port: int, team: str) -> dict[str, Any]:
    with _mongo(port) as mongo:
        doc = mongo.chat.teams.find_one({"_id": team})
    assert doc is not None
    return doc


async def _account(second: SecondStack) -> tuple[str, str]:
    """A registered user of the second stack: (id, access token)."""
    email = f"second-{uuid.uuid4().hex[:10]}@example.com"
    user_id = await register(second.base, email, PASSWORD, "Second")
    return user_id, (await login(second.base, email, PASSWORD)).access_token


def _stored_ids(port: int, channel: str) -> list[str]:
    with _mongo(port) as mongo:
        return [d["id"] for d in mongo.chat.messages.find({"channel_id": channel}, {"id": 1})]


async def test_a_relay_killed_with_9_takes_its_users_offline_within_60_s(
    second: SecondStack,
) -> None:
    """Presence with real processes: alice's only socket is on relay-1, bob's on relay-2; after
    kill -9 of relay-1 bob is told alice is offline within 60 s, and the team's list agrees."""
    alice, bob = await asyncio.gather(_account(second), _account(second))
    team = await _team(second, alice, bob[0])
    relay_1, relay_2 = (int(p) for p in second.env["CHATSTACK_RELAY_PORTS"].split(","))
    victim = await ChatClient.connect(f"ws://127.0.0.1:{relay_1}/v1/ws", alice[1])
    observer = await ChatClient.connect(f"ws://127.0.0.1:{relay_2}/v1/ws", bob[1])

    def alice_is(status: str) -> Callable[[dict[str, Any]], bool]:
        wanted = {"type": "presence", "user_id": alice[0], "status": status}
        return lambda f: all(f.get(k) == v for k, v in wanted.items())

    async def listed() -> str:
        members = await presence(second.base, bob[1], team)
        return str(next(p["status"] for p in members if p["user_id"] == alice[0]))

    try:
        if await listed() != "online":  # not yet seen by the time bob asked: a frame follows
            await frames_until(observer, alice_is("online"), 10)
        old = second.pid("relay-1")
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        await frames_until(observer, alice_is("offline"), 60)
        assert time.monotonic() - killed_at < 60
        assert await listed() == "offline"
        await second.restarted("relay-1", old)
    finally:
        await victim.close()
        await observer.close()


async def test_websockets_per_address_capped_by_the_stacks_nginx(second: SecondStack) -> None:
    """Through the real nginx and relays: past CHATSTACK_NGINX_WS_CONNECTIONS_PER_ADDRESS, 429."""
    _user_id, token = await _account(second)
    ws_url = second.base.replace("http://", "ws://") + "/v1/ws"
    async with AsyncExitStack() as held:
        for _ in range(WS_CAP):
            chat = await held.enter_async_context(await ChatClient.connect(ws_url, token))
            assert chat.hello["relay"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{second.base}/v1/ws",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                },
            ) as resp,
        ):
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "rate_limited"


async def test_api_requests_per_address_limited_by_the_stacks_nginx(second: SecondStack) -> None:
    """Through the real nginx: past CHATSTACK_NGINX_API_BURST quick requests, 429 envelopes."""
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(80):
            async with http.get(f"{second.base}/v1/openapi.json") as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert (await resp.json())["error"]["code"] == "rate_limited"
    assert statuses[0] == 200
    assert 429 in statuses
