"""The standard gRPC health service, reflecting whether the controller can do its job.

SERVING once the consumer holds an assignment (and is running) and the database answers;
NOT_SERVING otherwise, and for good once shutdown begins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from grpc import aio

# grpcio-health-checking ships no type information (no py.typed); the names used here are few.
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from chatcore.logging import get_logger
from chatcore.tasks import cancel_and_wait

CONTROLLER_SERVICE = "chat.v1.Controller"
_SERVICES = (health.OVERALL_HEALTH, CONTROLLER_SERVICE)

_log = get_logger("controller.health")

Check = Callable[[], Awaitable[bool]]


class GrpcHealth:
    def __init__(self, check: Check, *, interval_s: float = 1.0) -> None:
        self._servicer = health.aio.HealthServicer()
        self._check = check
        self._interval_s = interval_s
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    def add_to_server(self, server: aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        # The reference servicer starts out SERVING; say otherwise until the first check passes.
        await self._set(False)
        self._task = asyncio.create_task(self._watch())

    async def _set(self, serving: bool) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in _SERVICES:
            await self._servicer.set(service, status)
        _log.info("grpc_health", serving=serving)

    async def refresh(self) -> bool:
        """Check now (rather than at the next interval) and publish the result."""
        try:
            serving = await asyncio.wait_for(self._check(), self._interval_s * 3)
        except Exception:
            serving = False
        await self._set(serving)
        return serving

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.refresh()

    async def stop(self) -> None:
        """NOT_SERVING from now on (draining), and stop checking."""
        await cancel_and_wait(self._task)
        await self._servicer.enter_graceful_shutdown()
