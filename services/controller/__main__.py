"""``python -m services.controller``: run the controller until SIGTERM."""

from __future__ import annotations

import asyncio

from chatcore.lifecycle import run_until_signal
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.controller.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("controller", settings.log_level)
    asyncio.run(run_until_signal(lambda: start(settings), "controller"))


if __name__ == "__main__":
    main()
