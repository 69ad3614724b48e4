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

from chatcore.settings import Settings
from services.auth.keys import generate_key_file
from services.auth.server import start as start_auth
from tests.integration.pipeline_env import (
    Pipeline,
    around_controller,
    pipeline_settings,
    wait_relays_up,
)
from tests.integration.ports import free_port

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

    async def start(self) -> None:
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
) -> AsyncIterator[tuple[Pipeline, ControllerProcess]]:
    """Auth, management and two relays in-process; the controller as a process to kill."""
    key = tmp_path / "key.pem"
    generate_key_file(key)
    base = pipeline_settings(settings, key)
    auth = await start_auth(base, port=0)
    grpc_port = free_port()
    base = dataclasses.replace(
        base,
        jwks_url=f"http://127.0.0.1:{auth.port}/v1/auth/jwks",
        auth_url=f"http://127.0.0.1:{auth.port}",
        controller_grpc_port=grpc_port,
        controller_http_port=free_port(),
        controller_offset_reset="earliest",
        controller_addrs=(f"127.0.0.1:{grpc_port}",),
    )
    controller = ControllerProcess(base, tmp_path / "controller.log", module=module, env=env)
    stoppables: list[Any] = [auth]
    try:
        await controller.start()
        pipe = await around_controller(base, f"http://127.0.0.1:{auth.port}", None, stoppables)
        await wait_relays_up(pipe)
        yield pipe, controller
        await controller.stop()
        await pipe.stop()
    finally:
        if controller.running:
            await controller.kill()
