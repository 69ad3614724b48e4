"""``python -m services.controller``: run the controller until SIGTERM."""

from __future__ import annotations

from chatcore.lifecycle import serve
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.controller.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("controller", settings.log_level)
    serve(lambda: start(settings), "controller", event_loop=settings.event_loop)


if __name__ == "__main__":
    main()
