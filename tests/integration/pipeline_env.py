"""A complete messaging pipeline started in-process for tests and benchmarks.

Auth, one controller, two relays (and the management service for history) on free ports, on the
real Kafka and database of the local stack, with a database and consumer group of their own so
runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from pymongo.errors import PyMongoError

from chatclient import ChatClient, SyncedClient, login, register
from chatcore.kafka import EVENTS_TOPIC, make_producer
from chatcore.mongo import Document, database, make_mongo_client
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.auth.keys import generate_key_file
from services.auth.server import start as start_auth
from services.controller.hooks import ControllerHooks
from services.controller.server import start as start_controller
from services.management.server import start as start_management
from services.relay.server import RunningRelay
from services.relay.server import start as start_relay
from tests.team_docs import store_team

PASSWORD = "pipeline password 1"
# How long a stopping pipeline tries to drop its database.
_DROP_S = 10.0


@dataclasses.dataclass
class User:
    id: str
    email: str
    token: str


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    auth_url: str
    api_url: str
    relays: list[RunningRelay]
    controller: Any
    stoppables: list[Any]
    producer: AIOKafkaProducer
    mongo: Any

    def ws_url(self, relay: int = 0) -> str:
        return f"ws://127.0.0.1:{self.relays[relay].port}/v1/ws"

    @property
    def db(self) -> Any:
        return database(self.mongo, self.settings)

    async def user(self) -> User:
        email = f"u-{uuid.uuid4().hex[:12]}@example.com"
        await register(self.auth_url, email, PASSWORD, "Tester")
        session = await login(self.auth_url, email, PASSWORD)
        return User(session.user_id, email, session.access_token)

    async def team(self, members: Sequence[User], *, active: bool = True) -> str:
        """A team document as the management service writes it (tests set it up directly)."""
        team_id = uuid.uuid4().hex
        doc: Document = {
            "_id": team_id,
            "name": "Test team",
            "icon": "",
            "active": active,
            "meta_tags": [],
            "members": [m.id for m in members],
            "admins": [members[0].id],
            "super_admin": members[0].id,
            "doc": datetime.now(UTC),
        }
        await store_team(self.db, doc)
        return team_id

    async def connect(self, user: User, relay: int = 0) -> ChatClient:
        return await ChatClient.connect(self.ws_url(relay), user.token)

    async def synced(self, user: User, relay: int = 0) -> SyncedClient:
        """A client that follows the contract (resume, resync, reconnect), started."""
        client = SyncedClient(self.ws_url(relay), self.api_url, user.token)
        await client.start()
        return client

    async def membership_event(
        self, team_id: str, user_id: str, change: chat_pb2.MembershipChange.ValueType
    ) -> None:
        """Publish a membership event on chat.events.v1 as the management service does."""
        event = chat_pb2.MembershipEvent(
            channel_id=team_id, user_id=user_id, change=change, ts_ms=0, actor="test"
        )
        await self.producer.send_and_wait(
            EVENTS_TOPIC, event.SerializeToString(), key=team_id.encode()
        )

    async def drop_relay(self, relay: int) -> None:
        """Stop one relay for good (tests that need a single one)."""
        running = self.relays.pop(relay)
        self.stoppables.remove(running)
        await running.stop()

    async def stop(self) -> None:
        for item in reversed(self.stoppables):
            await item.stop()
        await self.producer.stop()
        try:
            # Each pipeline has a database of its own on the stack's server (the developer's,
            # under `make test`): left behind, every run would add one per test to it.
            await asyncio.wait_for(self.mongo.drop_database(self.settings.mongo_db), _DROP_S)
        except (TimeoutError, PyMongoError):
            pass  # a test that stopped the database server; the next run's data is its own
        finally:
            await self.mongo.close()


def pipeline_settings(base: Settings, key: Path) -> Settings:
    tag = uuid.uuid4().hex[:10]
    return dataclasses.replace(
        base,
        mongo_db=f"chat_test_pipe_{tag}",
        auth_signing_keys=(str(key),),
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        register_ip_burst=10_000,
        login_ip_burst=10_000,
        login_email_burst=100,
        controller_group_id=f"test-ctrl-{tag}",
        controller_offset_reset="latest",
        ws_rate_burst=10_000,
        ws_rate_per_s=10_000.0,
        ws_user_rate_burst=10_000,
        ws_user_rate_per_s=10_000.0,
    )


async def start_pipeline(
    base: Settings, key_dir: Path, *, hooks: ControllerHooks | None = None, **overrides: Any
) -> Pipeline:
    """The pipeline on free ports; ``hooks`` go to the controller, ``overrides`` to settings."""
    key = key_dir / f"{uuid.uuid4().hex}.pem"
    generate_key_file(key)
    settings = dataclasses.replace(pipeline_settings(base, key), **overrides)
    stoppables: list[Any] = []
    auth = await start_auth(settings, port=0)
    stoppables.append(auth)
    auth_url = f"http://127.0.0.1:{auth.port}"
    settings = dataclasses.replace(settings, jwks_url=f"{auth_url}/v1/auth/jwks", auth_url=auth_url)
    controller = await start_controller(settings, grpc_port=0, http_port=0, hooks=hooks)
    stoppables.append(controller)
    settings = dataclasses.replace(
        settings, controller_addrs=(f"127.0.0.1:{controller.grpc_port}",)
    )
    pipeline = await around_controller(settings, auth_url, controller, stoppables)
    await wait_ready(pipeline)
    return pipeline


async def around_controller(
    settings: Settings, auth_url: str, controller: Any, stoppables: list[Any]
) -> Pipeline:
    """Management, two relays (on ``settings.controller_addrs``) and a producer around them."""
    management = await start_management(settings, port=0)
    stoppables.append(management)
    relays = []
    for i in (1, 2):
        relay = await start_relay(dataclasses.replace(settings, relay_id=f"r{i}"), port=0)
        stoppables.append(relay)
        relays.append(relay)
    producer = make_producer(settings, client_id="test-pipeline")
    await producer.start()
    return Pipeline(
        settings=settings,
        auth_url=auth_url,
        api_url=f"http://127.0.0.1:{management.port}",
        relays=relays,
        controller=controller,
        stoppables=stoppables,
        producer=producer,
        mongo=make_mongo_client(settings),
    )


async def wait_relays_up(pipeline: Pipeline, timeout_s: float = 30.0) -> None:
    """Until every relay has all its controller streams UP."""
    await wait_link_up(*pipeline.relays, timeout_s=timeout_s)


async def wait_link_up(*relays: RunningRelay, timeout_s: float = 30.0) -> None:
    """Until each of these relays has all its controller streams UP."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not all(r.relay.link.all_up for r in relays):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("relay streams not up")
        await asyncio.sleep(0.05)


async def wait_ready(pipeline: Pipeline, timeout_s: float = 30.0) -> None:
    """Until the controller has its partitions and every relay has its controller stream."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            ready = all(r.relay.link.all_up for r in pipeline.relays)
            try:
                async with http.get(f"http://127.0.0.1:{pipeline.controller.port}/readyz") as resp:
                    ready = ready and resp.status == 200
            except aiohttp.ClientError:
                ready = False
            if ready:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("pipeline not ready")
