"""``python -m services.management``: run the management service until SIGTERM."""

from __future__ import annotations

from chatcore.lifecycle import main_of
from services.management.server import start


def main() -> None:
    main_of("management", start)


if __name__ == "__main__":
    main()
