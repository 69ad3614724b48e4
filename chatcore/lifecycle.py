"""Service lifecycle shared by every service: start on a port (0 picks one), stop with a drain.

``main()`` functions call ``run_until_signal``: the service starts, SIGTERM or SIGINT stops it
accepting new connections, in-flight requests get ``drain_timeout_s`` to finish, then everything
closes. Tests call ``start(settings)`` themselves and ``stop()`` the returned server.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web

from chatcore.logging import configure_logging, get_logger
from chatcore.settings import ConfigError, Settings

_log = get_logger("chatcore.lifecycle")

Cleanup = Callable[[], Awaitable[None]]


class RunningService(Protocol):
    @property
    def port(self) -> int: ...

    async def stop(self) -> None: ...


class RunningHttpApp:
    """An aiohttp app bound to a TCP port, with cleanups run after it stops serving."""

    def __init__(self, runner: web.AppRunner, port: int, cleanups: Sequence[Cleanup]) -> None:
        self._runner = runner
        self._port = port
        self._cleanups = list(cleanups)

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        # AppRunner.cleanup closes the listener first, then waits up to shutdown_timeout for
        # in-flight handlers: exactly the drain order we want.
        await self._runner.cleanup()
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception:
                _log.exception("cleanup_failed")


async def serve_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    drain_timeout_s: float,
    cleanups: Sequence[Cleanup] = (),
) -> RunningHttpApp:
    """Bind and start serving; the returned object knows the real port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=drain_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # the app's on_cleanup hooks run; nothing stays half set up
        raise
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return RunningHttpApp(runner, bound, cleanups)


# sysexits.h's EX_CONFIG: a configuration error, which restarting will not cure.
EXIT_CONFIG = 78


def main_of(name: str, start: Callable[[Settings], Awaitable[RunningService]]) -> None:
    """A service's ``main()``: settings from the environment, logging, then ``serve``. A
    configuration error, found reading the environment or while starting (a key file that cannot
    be read), ends the process with one line naming what to fix and exit status 78."""
    try:
        settings = Settings.from_env()
        configure_logging(name, settings.log_level)
        serve(lambda: start(settings), name, event_loop=settings.event_loop)
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc.message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def serve(start: Callable[[], Awaitable[RunningService]], name: str, *, event_loop: str) -> None:
    """A service's ``main()``: run it on the configured event loop until SIGTERM/SIGINT.

    ``uvloop`` (libuv, in C) makes every socket read and write, callback and timer cheaper than
    the standard loop; ``asyncio`` is there to rule the loop out when chasing a problem.
    """
    if event_loop == "uvloop":
        import uvloop

        uvloop.run(run_until_signal(start, name))
    else:
        asyncio.run(run_until_signal(start, name))


async def run_until_signal(start: Callable[[], Awaitable[RunningService]], name: str) -> None:
    """Start a service and run it until SIGTERM/SIGINT, then stop it gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = await start()
    _log.info("service_started", name=name, port=service.port)
    await stop.wait()
    _log.info("service_stopping", name=name)
    await service.stop()
    _log.info("service_stopped", name=name)
