"""``python -m services.relay``: run a relay until SIGTERM (then drain: sockets get 1012)."""

from __future__ import annotations

from chatcore.lifecycle import main_of
from services.relay.server import start


def main() -> None:
    main_of("relay", start)


if __name__ == "__main__":
    main()
