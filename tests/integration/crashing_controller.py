"""``python -m tests.integration.crashing_controller``: a controller that kills itself with
SIGKILL right after its Nth commit, holding back every stream write from the commit before on,
so that batch is committed yet reaches no relay: the window only a ``resync`` can cover.

``TEST_CRASH_AFTER_COMMITS`` is N; it crashes only while ``TEST_CRASH_MARKER`` does not exist
(and creates it), so a restart with the same environment runs normally.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from chatcore.lifecycle import run_until_signal
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.controller.hooks import ControllerHooks
from services.controller.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("controller", settings.log_level)
    crash_at = int(os.environ["TEST_CRASH_AFTER_COMMITS"])
    marker = Path(os.environ["TEST_CRASH_MARKER"])
    armed = not marker.exists()
    commits = 0
    held = asyncio.Event()

    def after_commit() -> None:
        nonlocal commits
        commits += 1
        if not armed:
            return
        if commits == crash_at - 1:
            held.set()  # from now on nothing more is written to any relay stream
        elif commits >= crash_at:
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    async def before_stream_write() -> None:
        if held.is_set():
            await asyncio.Event().wait()  # never: the process dies first

    hooks = ControllerHooks(after_commit=after_commit, before_stream_write=before_stream_write)
    asyncio.run(run_until_signal(lambda: start(settings, hooks=hooks), "controller"))


if __name__ == "__main__":
    main()
