"""Fixtures shared by the integration tests: a scratch database, and the management tests'
auth + management services in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore.mongo import Document, make_mongo_client
from chatcore.settings import Settings
from tests.integration.management_support import People, Stack, running_stack
from tests.integration.pipeline_env import Pipeline, start_pipeline


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """Auth and management services for this module."""
    async with running_stack(settings, tmp_path_factory.mktemp("keys")) as running:
        yield running


@pytest.fixture(scope="module")
async def people(stack: Stack) -> People:
    """Seven registered accounts reused across teams."""
    return await People.register(stack)


@pytest.fixture
async def pipe(settings: Settings, tmp_path: Path) -> AsyncIterator[Pipeline]:
    """Auth, controller, management and two relays on the local stack, for one test (modules
    that need other settings define their own)."""
    pipeline = await start_pipeline(settings, tmp_path)
    try:
        yield pipeline
    finally:
        await pipeline.stop()


@pytest.fixture
async def scratch_db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database of the test's own on the stack's server, dropped afterwards."""
    client = make_mongo_client(settings)
    name = f"chat_test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()
