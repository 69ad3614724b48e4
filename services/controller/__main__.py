"""``python -m services.controller``: run the controller until SIGTERM."""

from __future__ import annotations

from chatcore.lifecycle import main_of
from services.controller.server import start


def main() -> None:
    main_of("controller", start)


if __name__ == "__main__":
    main()
