"""Shared harness of the management integration tests; this module holds no tests itself.

``running_stack`` starts a real auth service and a real management service in-process on free
ports, against the local FerretDB (database ``chat_test_mgmt``) and Kafka. ``Api.call`` checks
every response it sees against docs/openapi.json, so every integration test is also a contract
test. ``EventTap`` reads ``chat.events.v1`` from offsets captured before an action.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from jsonschema import Draft202012Validator
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chatcore.kafka import EVENTS_TOPIC, topic_specs
from chatcore.mongo import Document, make_mongo_client
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.auth.keys import generate_key_file
from services.auth.server import start as start_auth
from services.management.openapi import OPENAPI_PATH
from services.management.server import start as start_management

TEST_DB = "chat_test_mgmt"
PASSWORD = "a long enough secret"
_DOC_URI = "urn:chatstack:openapi"


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


class OpenApiChecker:
    """Matches a concrete request to its documented operation and validates the response."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            _DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        templates = sorted(document["paths"], key=lambda t: t.count("{"))
        self._routes = [
            (str(t), re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", t) + "$")) for t in templates
        ]
        self.seen: set[tuple[str, str, int]] = set()

    def operations(self) -> list[tuple[str, str]]:
        """Every documented (path template, method)."""
        return [(p, m) for p, item in self.document["paths"].items() for m in item]

    def template(self, path: str) -> str:
        for template, pattern in self._routes:
            if pattern.match(path):
                return template
        raise AssertionError(f"undocumented path {path}")

    def check(
        self, method: str, path: str, status: int, body: Any, headers: Mapping[str, str]
    ) -> None:
        """Fail unless the status is documented for the operation and the body fits its schema."""
        template = self.template(path)
        method = method.lower()
        operation = self.document["paths"][template].get(method)
        assert operation is not None, f"undocumented operation {method.upper()} {template}"
        responses = operation["responses"]
        key = str(status) if str(status) in responses else "default" if status >= 500 else None
        assert key is not None, f"{method.upper()} {template} answered undocumented {status}"
        assert headers.get("X-Request-ID"), "every response carries X-Request-ID"
        self.seen.add((template, method, status))
        pointer = f"/paths/{_escape(template)}/{method}/responses/{key}"
        response = responses[key]
        if "$ref" in response:
            pointer = response["$ref"].removeprefix("#")
            response = self.resolve(pointer)
        if "content" not in response:
            assert body is None, f"{method.upper()} {template} {status} must have no body"
            return
        schema_pointer = f"{pointer}/content/application~1json/schema"
        validator = Draft202012Validator(
            {"$ref": f"{_DOC_URI}#{schema_pointer}"}, registry=self._registry
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, (
            f"{method.upper()} {path} {status}: {errors[0].message} at {list(errors[0].path)}"
        )

    def resolve(self, pointer: str) -> Any:
        """The node a JSON pointer names in the document."""
        node: Any = self.document
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def load_checker() -> OpenApiChecker:
    return OpenApiChecker(json.loads(OPENAPI_PATH.read_text()))


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def data(self) -> Any:
        assert isinstance(self.body, dict), self.body
        assert "data" in self.body, self.body
        return self.body["data"]

    @property
    def code(self) -> str:
        assert isinstance(self.body, dict), self.body
        assert "error" in self.body, self.body
        return str(self.body["error"]["code"])


_UNSET: Any = object()


class Api:
    """HTTP calls to either service, every response checked against the OpenAPI document."""

    def __init__(self, http: aiohttp.ClientSession, checker: OpenApiChecker) -> None:
        self.http = http
        self.checker = checker

    async def call(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        body: Any = _UNSET,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": sent}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not _UNSET:
            kwargs["json"] = body
        async with self.http.request(method, url, **kwargs) as resp:
            text = await resp.text()
            parsed = json.loads(text) if text else None
            reply = Reply(resp.status, parsed, dict(resp.headers))
            self.checker.check(method, resp.url.path, resp.status, parsed, resp.headers)
        return reply


@dataclasses.dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str


@dataclasses.dataclass
class Stack:
    settings: Settings
    auth_url: str
    url: str  # the first management instance
    api: Api
    db: AsyncDatabase[Document]
    # Every management instance (two, sharing the database): calls alternate between them, so
    # concurrent requests race across processes' leases as they do behind nginx.
    urls: tuple[str, ...] = ()
    _turn: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    async def account(self) -> Account:
        """A freshly registered and logged-in user."""
        email = f"mgmt-{uuid.uuid4().hex[:16]}@example.com"
        reply = await self.api.call(
            "POST",
            f"{self.auth_url}/v1/auth/register",
            body={"email": email, "password": PASSWORD, "name": "M"},
        )
        assert reply.status == 201, reply.body
        reply = await self.api.call(
            "POST",
            f"{self.auth_url}/v1/auth/login",
            body={"email": email, "password": PASSWORD},
        )
        assert reply.status == 200, reply.body
        return Account(reply.data["user"]["id"], email, reply.data["access_token"])

    async def call(
        self, method: str, path: str, who: Account | None, body: Any = _UNSET, **kw: Any
    ) -> Reply:
        """A management call as ``who`` (None: no token)."""
        token = who.token if who is not None else None
        urls = self.urls or (self.url,)
        url = urls[next(self._turn) % len(urls)]
        return await self.api.call(method, f"{url}{path}", token=token, body=body, **kw)

    async def team_doc(self, team_id: str) -> Document | None:
        """The raw stored document (for "unchanged after a denial" checks)."""
        return await self.db["teams"].find_one({"_id": team_id})


def stack_settings(base: Settings, key: Path) -> Settings:
    """Test settings: own database, cheap hashing, limits that test bursts never hit."""
    return dataclasses.replace(
        base,
        mongo_db=TEST_DB,
        auth_signing_keys=(str(key),),
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        register_ip_burst=100_000,
        register_ip_per_minute=1_000_000.0,
        login_ip_burst=100_000,
        login_ip_per_minute=1_000_000.0,
        management_write_burst=100_000,
        management_write_per_s=1_000_000.0,
        # Events left pending by a test go out quickly, not after the production interval.
        outbox_retry_interval_s=1.0,
    )


@contextlib.asynccontextmanager
async def running_stack(base: Settings, key_dir: Path) -> AsyncIterator[Stack]:
    """Auth and management services in-process on free ports, management trusting auth."""
    key = key_dir / "mgmt-test.pem"
    if not key.exists():
        generate_key_file(key)
    settings = stack_settings(base, key)
    client: AsyncMongoClient[Document] = make_mongo_client(settings)
    try:
        # A clean database per module: FerretDB scans whole collections, so leftovers of earlier
        # runs would slow every query down (the services create their indexes when they start).
        await client.drop_database(TEST_DB)
        auth = await start_auth(settings, port=0)
        try:
            auth_url = f"http://127.0.0.1:{auth.port}"
            settings = dataclasses.replace(
                settings, jwks_url=f"{auth_url}/v1/auth/jwks", auth_url=auth_url
            )
            management = await start_management(settings, port=0)
            try:
                # A second instance: its leases live in the same database, not in this one's
                # memory, exactly as two processes behind nginx.
                second = await start_management(settings, port=0)
                try:
                    async with aiohttp.ClientSession() as http:
                        url = f"http://127.0.0.1:{management.port}"
                        yield Stack(
                            settings=settings,
                            auth_url=auth_url,
                            url=url,
                            api=Api(http, load_checker()),
                            db=client[TEST_DB],
                            urls=(url, f"http://127.0.0.1:{second.port}"),
                        )
                finally:
                    await second.stop()
            finally:
                await management.stop()
        finally:
            await auth.stop()
    finally:
        await client.close()


@dataclasses.dataclass(frozen=True)
class Roles:
    """A team and one account per role, plus spares: a second admin, a second user, a stranger
    and a registered non-member to add."""

    team_id: str
    super_admin: Account
    admin: Account
    admin2: Account
    user: Account
    user2: Account
    stranger: Account
    outsider: Account

    def by_kind(self) -> dict[str, Account]:
        return {
            "non-member": self.stranger,
            "user": self.user,
            "admin": self.admin,
            "super_admin": self.super_admin,
        }


@dataclasses.dataclass(frozen=True)
class People:
    super_admin: Account
    admin: Account
    admin2: Account
    user: Account
    user2: Account
    stranger: Account
    outsider: Account

    @classmethod
    async def register(cls, stack: Stack) -> People:
        accounts = [await stack.account() for _ in range(7)]
        return cls(*accounts)


async def make_team(stack: Stack, people: People, **extra: Any) -> Roles:
    """A team: super_admin creates it, adds two admins and two users."""
    p = people
    reply = await stack.call("POST", "/v1/teams", p.super_admin, {"name": "matrix", **extra})
    assert reply.status == 201, reply.body
    team_id = reply.data["id"]
    for member in (p.admin, p.admin2, p.user, p.user2):
        added = await stack.call(
            "POST", f"/v1/teams/{team_id}/members", p.super_admin, {"user_id": member.id}
        )
        assert added.status == 201, added.body
    for admin in (p.admin, p.admin2):
        elected = await stack.call("PUT", f"/v1/teams/{team_id}/admins/{admin.id}", p.super_admin)
        assert elected.status == 200, elected.body
    return Roles(team_id, p.super_admin, p.admin, p.admin2, p.user, p.user2, p.stranger, p.outsider)


def assert_invariants(doc: Mapping[str, Any]) -> None:
    """The invariants no interleaving may break."""
    members, admins, super_admin = doc["members"], doc["admins"], doc["super_admin"]
    assert isinstance(super_admin, str), doc
    assert len(super_admin) == 32, doc
    assert super_admin in admins, doc
    assert set(admins) <= set(members), doc
    assert len(set(members)) == len(members), doc
    assert len(set(admins)) == len(admins), doc


@dataclasses.dataclass(frozen=True)
class Event:
    change: int
    user_id: str
    actor: str
    ts_ms: int
    correlation_id: str


class EventTap:
    """Reads ``chat.events.v1`` from the end offsets it saw when created (no consumer group)."""

    def __init__(self, consumer: AIOKafkaConsumer, start: dict[TopicPartition, int]) -> None:
        self._consumer = consumer
        self._start = start

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[EventTap]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            # The partition count is fixed at creation by the topic's spec.
            (spec,) = [s for s in topic_specs(settings) if s.name == EVENTS_TOPIC]
            partitions = [TopicPartition(EVENTS_TOPIC, p) for p in range(spec.partitions)]
            consumer.assign(partitions)
            start = await consumer.end_offsets(partitions)
            yield cls(consumer, dict(start))
        finally:
            await consumer.stop()

    async def events(self, key: str, count: int, *, timeout_s: float = 20.0) -> list[Event]:
        """The first ``count`` events keyed ``key`` since the tap opened (fails on timeout);
        then waits briefly to make sure no unexpected extra event follows."""
        for tp, offset in self._start.items():
            self._consumer.seek(tp, offset)
        found: list[Event] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        settle: float | None = None
        while loop.time() < deadline:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key != key.encode():
                        continue
                    event = chat_pb2.MembershipEvent.FromString(record.value)
                    headers = dict(record.headers)
                    assert event.channel_id == key
                    found.append(
                        Event(
                            event.change,
                            event.user_id,
                            event.actor,
                            event.ts_ms,
                            headers.get("correlation_id", b"").decode(),
                        )
                    )
            if len(found) >= count and settle is None:
                settle = loop.time() + 1.0
            if settle is not None and loop.time() >= settle:
                break
        assert len(found) >= count, f"saw {len(found)} of {count} events for {key}"
        return found
