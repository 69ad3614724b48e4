"""Shared fixtures: settings pointed at the local stack (``.stack/env``, written by the stack)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatcore.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def _stack_env() -> dict[str, str]:
    home = Path(os.environ.get("CHATSTACK_HOME", REPO / ".stack"))
    path = home / "env"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The stack's environment; integration tests fail loudly when the stack is not up."""
    env = {**_stack_env(), **{k: v for k, v in os.environ.items() if k.startswith("CHAT")}}
    if "CHAT_KAFKA_BOOTSTRAP" not in env:
        pytest.fail("local stack not configured: run `make stack-up` (or `make test`)")
    return env


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    """Settings for the running local stack."""
    return Settings.from_env(stack_env)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True, scope="module")
def _root_logger_put_back() -> Iterator[None]:
    """Each module leaves the root logger's level and handlers as it found them (tests.logs)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    changed = (root.level, list(root.handlers)) != (level, handlers)
    # Put back first: the modules after this one must not log (and print) what it left set.
    root.setLevel(level)
    root.handlers[:] = handlers
    assert not changed, "a test of this module left the root logger changed (use tests.logs)"
