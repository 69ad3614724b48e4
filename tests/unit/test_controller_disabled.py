"""The controller's set of disabled accounts: read whole, at most once per max age, one read at a
time however many handshakes ask."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from chatcore.errors import Unavailable
from chatcore.mongo import Document
from services.controller.directory import DisabledAccounts


class _Users:
    """A ``users`` collection that answers ``find({disabled: True})`` from a set."""

    def __init__(self) -> None:
        self.disabled: set[str] = set()
        self.reads = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    def find(self, query: Document, projection: Document) -> AsyncIterator[Document]:
        assert query == {"disabled": True}
        self.reads += 1
        return self._rows()

    async def _rows(self) -> AsyncIterator[Document]:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            from pymongo.errors import AutoReconnect

            raise AutoReconnect("down")
        for user_id in sorted(self.disabled):
            yield {"_id": user_id}


def _accounts(users: _Users, now: list[float]) -> DisabledAccounts:
    return DisabledAccounts(
        cast(AsyncCollection[Document], cast(Any, users)), max_age_s=1.0, clock=lambda: now[0]
    )


async def test_the_set_is_read_again_only_once_it_is_older_than_the_max_age() -> None:
    """A disable shows within the max age; before that the cached set answers."""
    users, now = _Users(), [100.0]
    accounts = _accounts(users, now)
    assert not await accounts.contains("u1")
    users.disabled.add("u1")
    now[0] = 100.5
    assert not await accounts.contains("u1")
    assert users.reads == 1
    now[0] = 101.2
    assert await accounts.contains("u1")
    assert users.reads == 2


async def test_concurrent_questions_share_one_read() -> None:
    """A storm of handshakes waits on a single query."""
    users, now = _Users(), [0.0]
    users.disabled.add("u2")
    users.gate = asyncio.Event()
    accounts = _accounts(users, now)
    asking = [asyncio.create_task(accounts.contains(u)) for u in ("u1", "u2", "u3") * 50]
    await asyncio.sleep(0)
    users.gate.set()
    answers = await asyncio.gather(*asking)
    assert answers.count(True) == 50
    assert users.reads == 1


async def test_a_failed_read_is_unavailable_and_the_next_question_reads_again() -> None:
    """The database being down surfaces as Unavailable, never as 'not disabled'."""
    users, now = _Users(), [0.0]
    users.fail = True
    accounts = _accounts(users, now)
    with pytest.raises(Unavailable):
        await accounts.contains("u1")
    users.fail = False
    users.disabled.add("u1")
    assert await accounts.contains("u1")
    assert users.reads == 2
