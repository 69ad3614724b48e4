"""Killing the controller mid-stream loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chatclient import Ack, ChatClient
from chatcore.kafka import make_producer
from chatcore.mongo import make_mongo_client
from chatcore.settings import Settings
from services.auth.keys import generate_key_file
from services.auth.server import start as start_auth
from services.relay.server import start as start_relay
from tests.integration.pipeline_env import Pipeline, pipeline_settings
from tests.integration.ports import free_port

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 2000


class _ControllerProcess:
    """``python -m services.controller`` as a real process that can be killed with SIGKILL."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.controller",
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{self.settings.controller_http_port}/readyz"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"controller not ready; log {self.log}")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def crash_env(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Pipeline, _ControllerProcess]]:
    """Auth and two relays in-process; the controller as a subprocess we can kill."""
    key = tmp_path / "key.pem"
    generate_key_file(key)
    base = pipeline_settings(settings, key)
    auth = await start_auth(base, port=0)
    base = dataclasses.replace(
        base,
        jwks_url=f"http://127.0.0.1:{auth.port}/v1/auth/jwks",
        auth_url=f"http://127.0.0.1:{auth.port}",
        controller_grpc_port=free_port(),
        controller_http_port=free_port(),
        controller_offset_reset="earliest",
    )
    base = dataclasses.replace(base, controller_addrs=(f"127.0.0.1:{base.controller_grpc_port}",))
    controller = _ControllerProcess(base, tmp_path / "controller.log")
    await controller.start()
    relays = [
        await start_relay(dataclasses.replace(base, relay_id=f"r{i}"), port=0) for i in (1, 2)
    ]
    producer = make_producer(base, client_id="crash-test")
    await producer.start()
    pipe = Pipeline(
        settings=base,
        auth_url=f"http://127.0.0.1:{auth.port}",
        api_url="",
        relays=relays,
        controller=None,
        stoppables=[auth, *relays],
        producer=producer,
        mongo=make_mongo_client(base),
    )
    for _ in range(300):
        if all(r.relay.link.all_up for r in relays):
            break
        await asyncio.sleep(0.1)
    yield pipe, controller
    await controller.stop()
    await pipe.stop()


async def test_kill_9_controller_mid_stream_loses_no_acked_message(
    crash_env: tuple[Pipeline, _ControllerProcess],
) -> None:
    """After SIGKILL and restart, every acked message is stored once and reaches the receiver."""
    pipe, controller = crash_env
    sender, receiver = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([sender, receiver])
    cs: ChatClient = await pipe.connect(sender, 0)
    cr: ChatClient = await pipe.connect(receiver, 1)

    async def send_all() -> list[Ack | BaseException]:
        sends = [cs.send(team, f"m{i}", client_msg_id=f"c{i}", timeout=60) for i in range(MESSAGES)]
        return await asyncio.gather(*sends, return_exceptions=True)

    sending = asyncio.create_task(send_all())
    # Kill the controller while messages are in flight: after some, long before all, arrived.
    received: dict[str, int] = {}
    while len(received) < MESSAGES // 5:
        event = await cr.receive(timeout=30)
        if "id" in event:
            received[event["id"]] = event["seq"]
    await controller.kill()
    await asyncio.sleep(0.5)
    await controller.start()
    results = await sending
    acks = [r for r in results if isinstance(r, Ack)]
    assert len(acks) == MESSAGES, [r for r in results if not isinstance(r, Ack)][:3]

    acked = {a.id for a in acks}
    deadline = asyncio.get_running_loop().time() + 60
    while not acked <= received.keys() and asyncio.get_running_loop().time() < deadline:
        try:
            event = await cr.receive(timeout=5)
        except TimeoutError:
            continue
        if "id" in event:
            received[event["id"]] = event["seq"]
    assert acked <= received.keys(), f"{len(acked - received.keys())} acked messages never arrived"

    docs = await pipe.db.messages.find({"channel_id": team}, {"id": 1, "seq": 1}).to_list()
    assert len(docs) == MESSAGES
    assert {d["id"] for d in docs} == acked
    assert {d["id"]: d["seq"] for d in docs} == {a.id: a.seq for a in acks}
    await cs.close()
    await cr.close()
