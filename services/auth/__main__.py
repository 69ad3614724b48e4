"""``python -m services.auth``: run the auth service until SIGTERM.

``python -m services.auth disable|enable --email X``: the operator commands (``cli.py``).
"""

from __future__ import annotations

import sys

from chatcore.lifecycle import serve
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.auth.cli import main as admin_main
from services.auth.server import start


def main() -> None:
    if len(sys.argv) > 1:
        sys.exit(admin_main(sys.argv[1:]))
    settings = Settings.from_env()
    configure_logging("auth", settings.log_level)
    serve(lambda: start(settings), "auth", event_loop=settings.event_loop)


if __name__ == "__main__":
    main()
