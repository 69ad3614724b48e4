"""Fixtures shared by the management integration tests (auth + management in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatcore.settings import Settings
from tests.integration.management_support import People, Stack, running_stack


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
