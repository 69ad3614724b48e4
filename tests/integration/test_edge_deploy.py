"""The deployed shape through nginx: every service a real process, two relays, drain and crash.

Auth, management, one controller and two relays run as subprocesses (``python -m services.*`` with
``Settings.to_env()``) on free ports, behind nginx rendered from the same template as the local
stack, on the shared Kafka and database with a database and consumer group of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from chatclient import Ack, ChatClient, history, login, register
from chatcore.mongo import make_mongo_client
from chatcore.settings import Settings
from deploy.local.nginx import Route, chat_routes, render_nginx_conf
from deploy.local.processes import Component, Runner, http_ok
from services.auth.keys import generate_key_file
from tests.integration.pipeline_env import pipeline_settings
from tests.integration.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "edge deploy password 1"
RELAY_IDS = ("edge-r1", "edge-r2")


def _http_ready(port: int) -> Callable[[], bool]:
    return lambda: http_ok(f"http://127.0.0.1:{port}/readyz")


@dataclasses.dataclass
class User:
    id: str
    token: str


@dataclasses.dataclass
class Edge:
    settings: Settings
    base: str
    runner: Runner
    relays: dict[str, str]  # relay id -> component name
    relay_ports: dict[str, int]  # component name -> port

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/v1/ws"

    @property
    def logs(self) -> Path:
        return self.runner.log_dir

    async def user(self) -> User:
        email = f"edge-{uuid.uuid4().hex[:12]}@example.com"
        user_id = await register(self.base, email, PASSWORD, "Edge")
        session = await login(self.base, email, PASSWORD)
        return User(user_id, session.access_token)

    async def team(self, owner: User, members: list[User]) -> str:
        """A team created over REST through nginx, with ``members`` added by the owner."""
        auth = {"Authorization": f"Bearer {owner.token}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"{self.base}/v1/teams", json={"name": "Edge"}) as resp:
                assert resp.status == 201, await resp.text()
                team_id = str((await resp.json())["data"]["id"])
            for member in members:
                async with http.post(
                    f"{self.base}/v1/teams/{team_id}/members", json={"user_id": member.id}
                ) as resp:
                    assert resp.status in (200, 201), await resp.text()
        return team_id

    async def connect(self, user: User) -> ChatClient:
        return await ChatClient.connect(self.ws_url, user.token)

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        lines = []
        for raw in self.runner.log_path(name).read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    lines.append(parsed)
        return lines


def _service(name: str, module: str, settings: Settings, port: int, **extra: str) -> Component:
    env = {**settings.to_env(), "PYTHONUNBUFFERED": "1", **extra}
    return Component(
        name=name,
        argv=[sys.executable, "-m", module],
        ready=_http_ready(port),
        ports=(port,),
        env=env,
        cwd=REPO,
        ready_timeout_s=45.0,
    )


def _nginx(home: Path, port: int, routes: Sequence[Route], log_dir: Path) -> Component:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = home / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(listen=f"127.0.0.1:{port}", prefix=prefix, log_dir=log_dir, routes=routes)
    )

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    return Component("nginx", [binary, "-p", str(prefix), "-c", str(conf)], ready=ready)


@pytest.fixture
async def edge(settings: Settings, tmp_path: Path) -> AsyncIterator[Edge]:
    """Auth, management, a controller and two relays as processes, behind a fresh nginx."""
    key = tmp_path / "key.pem"
    generate_key_file(key)
    auth_port, mgmt_port, grpc_port, ctrl_port, nginx_port, *relay_ports = free_ports(
        5 + len(RELAY_IDS)
    )
    base = dataclasses.replace(
        pipeline_settings(settings, key),
        auth_port=auth_port,
        management_port=mgmt_port,
        controller_grpc_port=grpc_port,
        controller_http_port=ctrl_port,
        controller_addrs=(f"127.0.0.1:{grpc_port}",),
        jwks_url=f"http://127.0.0.1:{auth_port}/v1/auth/jwks",
        auth_url=f"http://127.0.0.1:{auth_port}",
    )
    runner = Runner(tmp_path / "stack", echo=lambda _line: None)
    # Per-message lines (message_accepted, message_persisted) are DEBUG.
    debug = {"CHAT_LOG_LEVEL": "debug"}
    first = [
        _service("auth", "services.auth", base, auth_port),
        _service("controller", "services.controller", base, ctrl_port, **debug),
        _service("management", "services.management", base, mgmt_port),
    ]
    relays = [
        _service(
            f"relay-{i}",
            "services.relay",
            base,
            port,
            CHAT_RELAY_PORT=str(port),
            CHAT_RELAY_ID=relay_id,
            **debug,
        )
        for i, (relay_id, port) in enumerate(zip(RELAY_IDS, relay_ports, strict=True), start=1)
    ]
    routes = chat_routes(
        relay_ports=relay_ports, auth_ports=[auth_port], management_ports=[mgmt_port]
    )
    names = [c.name for c in (*first, *relays)] + ["nginx"]
    try:
        await asyncio.gather(*(asyncio.to_thread(runner.start, c) for c in first))
        await asyncio.gather(*(asyncio.to_thread(runner.start, c) for c in relays))
        await asyncio.to_thread(runner.start, _nginx(tmp_path, nginx_port, routes, runner.log_dir))
        yield Edge(
            settings=base,
            base=f"http://127.0.0.1:{nginx_port}",
            runner=runner,
            relays={rid: f"relay-{i}" for i, rid in enumerate(RELAY_IDS, start=1)},
            relay_ports={f"relay-{i}": port for i, port in enumerate(relay_ports, start=1)},
        )
    finally:
        await asyncio.gather(*(asyncio.to_thread(runner.stop, n) for n in reversed(names)))
        mongo = make_mongo_client(base)
        try:
            await mongo.drop_database(base.mongo_db)
        finally:
            await mongo.close()


async def _message(client: ChatClient, message_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The delivery of ``message_id`` (other frames before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        event = await client.receive(timeout=max(0.1, deadline - time.monotonic()))
        if event.get("id") == message_id:
            return event


def _drain_queue(client: ChatClient, into: dict[str, dict[str, Any]]) -> None:
    """Move deliveries the reader already queued into ``into`` (keyed by id)."""
    while not client.events.empty():
        event = client.events.get_nowait()
        if "id" in event:
            into[event["id"]] = event


async def test_two_clients_on_different_relays_chat_both_ways(edge: Edge) -> None:
    """Two clients land on different relays behind nginx and each receives the other's message."""
    alice, bob = await asyncio.gather(edge.user(), edge.user())
    team = await edge.team(alice, [bob])
    ca = await edge.connect(alice)
    cb = await edge.connect(bob)
    assert {ca.hello["relay"], cb.hello["relay"]} == set(RELAY_IDS)
    assert team in ca.hello["channels"]
    assert team in cb.hello["channels"]

    ack = await ca.send(team, "hello bob")
    got = await _message(cb, ack.id)
    assert (got["from"], got["data"], got["seq"]) == (alice.id, "hello bob", ack.seq)
    back = await cb.send(team, "hello alice")
    got = await _message(ca, back.id)
    assert (got["from"], got["data"], got["seq"]) == (bob.id, "hello alice", back.seq)
    assert back.seq > ack.seq
    await ca.close()
    await cb.close()


async def _failover(edge: Edge, sig: signal.Signals) -> tuple[int | None, float]:
    """Bob's relay gets ``sig`` while Alice sends; Bob reconnects via nginx and resumes.

    Returns Bob's close code and how long the drop took to reach him.
    """
    alice, bob = await asyncio.gather(edge.user(), edge.user())
    team = await edge.team(alice, [bob])
    ca = await edge.connect(alice)
    cb = await edge.connect(bob)
    assert ca.hello["relay"] != cb.hello["relay"]
    doomed = cb.hello["relay"]

    acks: list[Ack] = []
    stop_sending = asyncio.Event()

    async def send_until_stopped() -> None:
        i = 0
        while not stop_sending.is_set():
            acks.append(await ca.send(team, f"m{i}", client_msg_id=f"m{i}"))
            i += 1
            await asyncio.sleep(0.005)

    sending = asyncio.create_task(send_until_stopped())
    received: dict[str, dict[str, Any]] = {}
    while len(received) < 20:
        event = await cb.receive(timeout=10)
        if "id" in event:
            received[event["id"]] = event

    started = time.monotonic()
    stopping = asyncio.create_task(
        asyncio.to_thread(edge.runner.stop, edge.relays[doomed], 30.0, sig)
    )
    await asyncio.wait_for(cb.conn.wait_closed(), 30)
    dropped_after = time.monotonic() - started
    with contextlib.suppress(asyncio.CancelledError):
        await cb._reader
    _drain_queue(cb, received)
    code = cb.close_code

    # Reconnect through nginx (it lands on the surviving relay), then resume from history.
    cb2 = await edge.connect(bob)
    assert cb2.hello["relay"] != doomed
    last_seq = max(int(e["seq"]) for e in received.values())
    for message in await history(edge.base, bob.token, team, after=last_seq):
        received.setdefault(message["id"], message)
    await asyncio.sleep(1.0)  # Alice keeps sending across the switch
    stop_sending.set()
    await sending
    await stopping

    wanted = {a.id: a.seq for a in acks}
    deadline = time.monotonic() + 20
    while not wanted.keys() <= received.keys() and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            event = await cb2.receive(timeout=1)
            if "id" in event:
                received.setdefault(event["id"], event)
    assert received.keys() == wanted.keys(), (
        f"missing {len(wanted.keys() - received.keys())}, extra {len(received.keys() - wanted)}"
    )
    assert {i: int(e["seq"]) for i, e in received.items()} == wanted
    seqs = sorted(wanted.values())
    assert len(set(seqs)) == len(seqs)
    assert [e["data"] for e in sorted(received.values(), key=lambda e: e["seq"])] == [
        f"m{i}" for i in range(len(acks))
    ]
    await ca.close()
    await cb2.close()
    return code, dropped_after


async def test_sigterm_relay_clients_get_1012_and_resume_through_nginx(edge: Edge) -> None:
    """SIGTERM drains a relay: 1012, reconnect to the other relay, history fills the gap exactly."""
    code, _dropped_after = await _failover(edge, signal.SIGTERM)
    assert code == 1012


async def test_kill_9_relay_clients_reconnect_and_resume_within_seconds(edge: Edge) -> None:
    """kill -9 of a relay: its clients see the drop within seconds, reconnect and resume exactly."""
    code, dropped_after = await _failover(edge, signal.SIGKILL)
    assert code != 1012
    assert dropped_after < 5.0


async def _logged_up_to_here(edge: Edge, user: User) -> None:
    """Until a marker sent now is in the log of every process a client's request reaches
    (nginx, auth, management, each relay): what they logged for earlier requests is there too."""
    marker = f"marker-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession(headers={"X-Request-ID": marker}) as http:
        for path in ("/v1/auth/jwks", "/v1/teams"):
            async with http.get(f"{edge.base}{path}") as resp:
                await resp.read()
    headers = {"Authorization": f"Bearer {user.token}", "X-Request-ID": marker}
    for port in edge.relay_ports.values():
        async with ws_connect(f"ws://127.0.0.1:{port}/v1/ws", additional_headers=headers) as ws:
            await ws.recv()  # hello: the relay logs ws_connected with the request id
    names = ["nginx-access", "auth", "management", *edge.relay_ports]
    deadline = time.monotonic() + 10
    while missing := [
        n for n in names if marker not in (edge.logs / f"{n}.log").read_text(errors="replace")
    ]:
        assert time.monotonic() < deadline, f"marker not logged by {missing}"
        await asyncio.sleep(0.05)


async def test_query_token_never_logged(edge: Edge) -> None:
    """A token sent as ?token= (good or tampered) appears in no nginx or service log file."""
    alice = await edge.user()
    team = await edge.team(alice, [])
    async with await ChatClient.connect(edge.ws_url, alice.token, in_query=True) as chat:
        await chat.send(team, "query token")
    tampered = alice.token[:-6] + ("AAAAAA" if not alice.token.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(InvalidStatus) as rejected:
        await ChatClient.connect(edge.ws_url, tampered, in_query=True)
    assert rejected.value.response.status_code == 401
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{edge.base}/v1/teams?token={alice.token}") as resp,
    ):
        assert resp.status == 401
    await _logged_up_to_here(edge, alice)
    logs = sorted(edge.logs.glob("*.log"))
    assert {p.name for p in logs} >= {
        "nginx-access.log",
        "nginx-error.log",
        "auth.log",
        "management.log",
        "controller.log",
        "relay-1.log",
        "relay-2.log",
    }
    signatures = {alice.token.rsplit(".", 1)[1], tampered.rsplit(".", 1)[1]}
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in (alice.token, tampered, *signatures):
            assert secret not in text, f"a token appeared in {path.name}"
    assert '"uri":"/v1/ws"' in (edge.logs / "nginx-access.log").read_text()


async def test_correlation_id_in_relay_and_controller_logs(edge: Edge) -> None:
    """A message's id is the correlation_id of relay and controller lines; gRPC carries ids too."""
    alice = await edge.user()
    team = await edge.team(alice, [])
    async with await edge.connect(alice) as chat:
        ack = await chat.send(team, "trace me")
        relay = edge.relays[chat.hello["relay"]]
    deadline = time.monotonic() + 10
    found: dict[str, dict[str, Any]] = {}
    while len(found) < 2 and time.monotonic() < deadline:
        for name, event in ((relay, "message_accepted"), ("controller", "message_persisted")):
            for line in edge.log_lines(name):
                if line.get("event") == event and line.get("correlation_id") == ack.id:
                    found[name] = line
        await asyncio.sleep(0.2)
    assert found.keys() == {relay, "controller"}, found
    assert found[relay]["seq"] == ack.seq
    assert found[relay]["user_id"] == alice.id
    assert found["controller"]["seq"] == ack.seq
    assert found["controller"]["channel_id"] == team
    # gRPC metadata: each relay's Subscribe stream carries x-correlation-id = its relay id.
    subscribed = {
        line.get("correlation_id")
        for line in edge.log_lines("controller")
        if line.get("event") == "relay_subscribed"
    }
    assert subscribed >= set(RELAY_IDS)
