"""``python -m services.management``: run the management service until SIGTERM."""

from __future__ import annotations

import asyncio

from chatcore.lifecycle import run_until_signal
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.management.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("management", settings.log_level)
    asyncio.run(run_until_signal(lambda: start(settings), "management"))


if __name__ == "__main__":
    main()
