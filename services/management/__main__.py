"""``python -m services.management``: run the management service until SIGTERM."""

from __future__ import annotations

from chatcore.lifecycle import serve
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.management.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("management", settings.log_level)
    serve(lambda: start(settings), "management", event_loop=settings.event_loop)


if __name__ == "__main__":
    main()
