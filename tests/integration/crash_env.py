"""A pipeline whose controller is a real process that can be killed with SIGKILL.

Auth, management and two relays run in-process (as in ``pipeline_env``); the controller runs as
``python -m <module>`` on fixed free ports, so a killed one can be started again where the relays
expect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from chatcore.kafka import make_admin
from chatcore.settings import Settings
from services.auth.keys import generate_key_file
from services.auth.server import start as start_auth
from services.controller.consumer import CONSUMED_TOPICS
from tests.integration.pipeline_env import (
    Pipeline,
    around_controller,
    pipeline_settings,
    wait_relays_up,
)
from tests.integration.ports import free_ports

REPO = Path(__file__).resolve().parents[2]


class ControllerProcess:
    """``python -m <module>`` (the controller, or a test wrapper around it) as a real process."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        module: str = "services.controller",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.module = module
        self.env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, may_crash: bool = False) -> None:
        """Start the process and wait until it is ready; ``may_crash``: a controller armed to kill
        itself may do so before its readiness is seen, which then counts as started."""
        env = {**os.environ, **self.settings.to_env(), **self.env, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{self.settings.controller_http_port}/readyz"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if self.proc.returncode == -signal.SIGKILL and may_crash:
                    return
                if self.proc.returncode is not None:
                    break
                try:
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"controller not ready; log {self.log}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)


@contextlib.asynccontextmanager
async def crashable_pipeline(
    settings: Settings,
    tmp_path: Path,
    *,
    module: str = "services.controller",
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Pipeline, ControllerProcess]]:
    """Auth, management and two relays in-process; the controller as a process to kill.

    ``overrides`` go to every service's settings (after the pipeline's own).
    """
    key = tmp_path / "key.pem"
    generate_key_file(key)
    base = pipeline_settings(settings, key)
    auth = await start_auth(base, port=0)
    grpc_port, http_port = free_ports(2)
    base = dataclasses.replace(
        base,
        jwks_url=f"http://127.0.0.1:{auth.port}/v1/auth/jwks",
        auth_url=f"http://127.0.0.1:{auth.port}",
        controller_grpc_port=grpc_port,
        controller_http_port=http_port,
        controller_offset_reset="earliest",
        controller_addrs=(f"127.0.0.1:{grpc_port}",),
    )
    base = dataclasses.replace(base, **overrides)
    await _start_group_at_end(base)
    controller = ControllerProcess(base, tmp_path / "controller.log", module=module, env=env)
    stoppables: list[Any] = [auth]
    pipe: Pipeline | None = None
    try:
        await controller.start()
        pipe = await around_controller(base, f"http://127.0.0.1:{auth.port}", None, stoppables)
        await wait_relays_up(pipe)
        yield pipe, controller
        await controller.stop()
    finally:
        if controller.running:
            await controller.kill()
        if pipe is not None:
            await pipe.stop()
        else:
            for item in reversed(stoppables):
                await item.stop()


async def _start_group_at_end(settings: Settings) -> None:
    """Commit the end of every consumed partition for the test's fresh consumer group.

    The group then starts where the topics end now, not at the older tests' records: catching
    up on those would take each controller life a while, and a crash could hit a batch of them
    (which no listener of the test misses) instead of the test's own.
    """
    admin = make_admin(settings, client_id="test-group-at-end")
    await admin.start()
    try:
        described = await admin.describe_topics(list(CONSUMED_TOPICS))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.controller_group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()
