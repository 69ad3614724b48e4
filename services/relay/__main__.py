"""``python -m services.relay``: run a relay until SIGTERM (then drain: sockets get 1012)."""

from __future__ import annotations

import asyncio

from chatcore.lifecycle import run_until_signal
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.relay.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("relay", settings.log_level)
    asyncio.run(run_until_signal(lambda: start(settings), "relay"))


if __name__ == "__main__":
    main()
