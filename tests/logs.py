"""Our JSON log lines captured in a test, with the root logger put back as it was afterwards.

Without the restore, a module that logs at debug leaves the root logger there for the rest of
the session, and every later failure's captured log then carries library debug lines (the
WebSocket client's request headers, bearer tokens included) into CI's output.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from chatcore.logging import configure_logging


@contextmanager
def json_logs(service: str, level: str = "info") -> Iterator[io.StringIO]:
    """Log lines of ``service`` at ``level`` into the stream yielded, for the ``with`` block."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(service, level, stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(saved_level)
