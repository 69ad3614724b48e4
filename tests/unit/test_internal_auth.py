"""The internal gRPC secret (``CHAT_INTERNAL_TOKEN``): relays and controllers refuse to start
without one of at least 16 characters, before they open anything."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import pytest

from chatcore.errors import ConfigError
from chatcore.internal_auth import MIN_TOKEN_CHARS, InternalTokenInterceptor, required_token
from chatcore.lifecycle import RunningService
from chatcore.settings import Settings
from services.controller import server as controller_server
from services.relay import server as relay_server

GOOD = secrets.token_urlsafe(32)  # what the local stack generates: 43 characters
REFUSED = "CHAT_INTERNAL_TOKEN must be set to a secret of at least 16 characters"


def _settings(token: str) -> Settings:
    """Settings as a service reads them from its environment, with a database and a Kafka that
    nothing listens on: a start that got past the secret would fail on those, not hang or touch
    a running stack."""
    return Settings.from_env(
        {
            "CHAT_INTERNAL_TOKEN": token,
            "CHAT_MONGO_URL": "mongodb://127.0.0.1:9/",
            "CHAT_MONGO_TIMEOUT_MS": "200",
            "CHAT_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "CHAT_KAFKA_REQUEST_TIMEOUT_MS": "1000",
            "CHAT_JWKS_URL": "http://127.0.0.1:9/v1/auth/jwks",
        }
    )


@pytest.mark.parametrize(
    "token",
    ["", "x" * (MIN_TOKEN_CHARS - 1), "  fifteen-chars  "],
    ids=["missing", "one-short", "short-once-trimmed"],
)
def test_a_missing_or_short_secret_is_refused_naming_the_variable(token: str) -> None:
    """No secret, or one under 16 characters (surrounding whitespace does not count), is a
    ConfigError that names CHAT_INTERNAL_TOKEN and the minimum length."""
    assert MIN_TOKEN_CHARS == 16
    settings = _settings(token)
    with pytest.raises(ConfigError, match=REFUSED):
        required_token(settings.internal_token)
    with pytest.raises(ConfigError, match=REFUSED):
        InternalTokenInterceptor(settings.internal_token)


@pytest.mark.parametrize("token", ["x" * MIN_TOKEN_CHARS, GOOD], ids=["sixteen", "generated"])
def test_a_secret_of_at_least_16_characters_is_accepted(token: str) -> None:
    """A secret of 16 characters or more is accepted unchanged, by the check and by the
    controller's interceptor."""
    assert required_token(_settings(token).internal_token) == token
    InternalTokenInterceptor(token)


async def _start_relay(settings: Settings) -> RunningService:
    return await relay_server.start(settings, port=0)


async def _start_controller(settings: Settings) -> RunningService:
    return await controller_server.start(settings, grpc_port=0, http_port=0)


@pytest.mark.parametrize("start", [_start_relay, _start_controller], ids=["relay", "controller"])
@pytest.mark.parametrize("token", ["", "x" * (MIN_TOKEN_CHARS - 1)], ids=["missing", "short"])
async def test_relays_and_controllers_refuse_to_start_without_a_good_secret(
    start: Callable[[Settings], Awaitable[RunningService]], token: str
) -> None:
    """Starting a relay or a controller with a missing or short secret raises the ConfigError
    at once, before connecting to anything."""
    async with asyncio.timeout(10):  # a start that went on would fail on the dead addresses
        with pytest.raises(ConfigError, match=REFUSED):
            await start(_settings(token))
