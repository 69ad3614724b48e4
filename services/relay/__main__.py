"""``python -m services.relay``: run a relay until SIGTERM (then drain: sockets get 1012)."""

from __future__ import annotations

from chatcore.lifecycle import serve
from chatcore.logging import configure_logging
from chatcore.settings import Settings
from services.relay.server import start


def main() -> None:
    settings = Settings.from_env()
    configure_logging("relay", settings.log_level)
    serve(lambda: start(settings), "relay", event_loop=settings.event_loop)


if __name__ == "__main__":
    main()
