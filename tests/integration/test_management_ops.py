"""The management service's operations endpoints: health, readiness of database and Kafka,
Prometheus metrics, and a start-up that fails half-way."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from chatcore.errors import ConfigError
from chatcore.kafka import make_producer
from chatcore.mongo import make_mongo_client
from chatcore.settings import Settings
from services.management import server
from tests.integration.management_support import TEST_DB, People, Stack, make_team


async def test_health_readiness_and_metrics(stack: Stack) -> None:
    """/healthz and /readyz answer 200 with both dependencies up; /metrics counts our work."""
    http = stack.api.http
    async with http.get(f"{stack.url}/healthz") as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-ID"]
    async with http.get(f"{stack.url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["data"] == {"status": "ready"}
    await make_team(stack, await People.register(stack))
    # Calls alternate between the two instances: the work is the sum of their counters.
    texts = []
    for url in stack.urls:
        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 200
            texts.append(await resp.text())

    def total(sample: str) -> float:
        found = (re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M) for text in texts)
        return sum(float(m.group(1)) for m in found if m)

    assert total('management_team_changes_total{kind="create"}') == 1.0
    assert total('management_membership_events_total{change="added",outcome="ok"}') == 5.0
    assert total(
        'http_requests_total{method="POST",route="/v1/teams/{team_id}/members",status="201"}'
    )


async def test_a_start_that_fails_half_way_closes_what_it_opened(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad setting found after the database, Kafka and HTTP clients were opened: start fails
    with ConfigError and leaves no client open and no task running."""
    opened: list[Any] = []
    session_type = aiohttp.ClientSession

    def recording(factory: Callable[..., Any]) -> Callable[..., Any]:
        def make(*args: Any, **kwargs: Any) -> Any:
            made = factory(*args, **kwargs)
            opened.append(made)
            return made

        return make

    monkeypatch.setattr(server, "make_mongo_client", recording(make_mongo_client))
    monkeypatch.setattr(server, "make_producer", recording(make_producer))
    monkeypatch.setattr(aiohttp, "ClientSession", recording(session_type))
    before = asyncio.all_tasks()
    broken = dataclasses.replace(settings, mongo_db=TEST_DB, clamd_address="no-port-here")
    with pytest.raises(ConfigError, match="CHAT_CLAMD_ADDRESS"):
        await server.start(broken, port=0)

    kinds = sorted(type(o).__name__ for o in opened)
    assert kinds == ["AIOKafkaProducer", "AsyncMongoClient", "ClientSession"]
    for thing in opened:
        closed = thing.closed if isinstance(thing, session_type) else thing._closed
        assert closed, f"{type(thing).__name__} left open"
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    current = asyncio.current_task()
    assert current is not None
    leftover.discard(current)
    # Other instances in this loop (the module's stack) start short fetches all the time; a
    # task the failed start left behind is still pending a moment later.
    await asyncio.sleep(0.5)
    leftover = {t for t in leftover if not t.done()}
    assert not leftover, leftover
