"""``python -m services.auth``: run the auth service until SIGTERM.

``python -m services.auth disable|enable --email X``: the operator commands (``cli.py``).
"""

from __future__ import annotations

import asyncio
import sys

from chatcore.lifecycle import run_until_signal
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.auth.cli import main as admin_main
from services.auth.server import start


def main() -> None:
    if len(sys.argv) > 1:
        sys.exit(admin_main(sys.argv[1:]))
    settings = Settings.from_env()
    configure_logging("auth", settings.log_level)
    asyncio.run(run_until_signal(lambda: start(settings), "auth"))


if __name__ == "__main__":
    main()
