"""Killing the controller mid-stream loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatclient import Ack, ChatClient
from chatcore.settings import Settings
from tests.integration.crash_env import ControllerProcess, crashable_pipeline
from tests.integration.pipeline_env import Pipeline

MESSAGES = 2000


@pytest.fixture
async def crash_env(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Pipeline, ControllerProcess]]:
    """Auth, management and two relays in-process; the controller as a subprocess we can kill."""
    async with crashable_pipeline(settings, tmp_path) as env:
        yield env


async def test_kill_9_controller_mid_stream_loses_no_acked_message(
    crash_env: tuple[Pipeline, ControllerProcess],
) -> None:
    """After SIGKILL and restart, every acked message is stored once and reaches the receiver."""
    pipe, controller = crash_env
    sender, receiver = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([sender, receiver])
    cs: ChatClient = await pipe.connect(sender, 0)
    cr = await pipe.synced(receiver, 1)

    async def send_all() -> list[Ack | BaseException]:
        sends = [cs.send(team, f"m{i}", client_msg_id=f"c{i}", timeout=60) for i in range(MESSAGES)]
        return await asyncio.gather(*sends, return_exceptions=True)

    sending = asyncio.create_task(send_all())
    # Kill the controller while messages are in flight: after some, long before all, arrived.
    await cr.wait_for(lambda: len(cr.timeline.messages(team)) >= MESSAGES // 5)
    await controller.kill()
    await controller.start()
    results = await sending
    acks = [r for r in results if isinstance(r, Ack)]
    assert len(acks) == MESSAGES, [r for r in results if not isinstance(r, Ack)][:3]

    acked = {a.id for a in acks}
    await cr.wait_for(lambda: {m["id"] for m in cr.timeline.messages(team)} >= acked, 60)
    shown = cr.timeline.messages(team)
    assert [m["id"] for m in shown] == sorted(acked, key=lambda i: {a.id: a.seq for a in acks}[i])

    docs = await pipe.db.messages.find({"channel_id": team}, {"id": 1, "seq": 1}).to_list()
    assert len(docs) == MESSAGES
    assert {d["id"] for d in docs} == acked
    assert {d["id"]: d["seq"] for d in docs} == {a.id: a.seq for a in acks}
    await cs.close()
    await cr.close()
