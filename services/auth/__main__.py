"""``python -m services.auth``: run the auth service until SIGTERM.

``python -m services.auth disable|enable --email X``: the operator commands (``cli.py``).
"""

from __future__ import annotations

import sys

from chatcore.lifecycle import main_of
from services.auth.cli import main as admin_main
from services.auth.server import start


def main() -> None:
    if len(sys.argv) > 1:
        sys.exit(admin_main(sys.argv[1:]))
    main_of("auth", start)


if __name__ == "__main__":
    main()
