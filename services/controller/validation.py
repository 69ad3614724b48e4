"""Checks on values arriving over gRPC before they reach a query or a log line."""

from __future__ import annotations

from collections.abc import Iterable

from grpc import aio

from chatcore.errors import InvalidInput
from chatcore.logging import CORRELATION_ID_RE
from chatcore.messages import ID_RE, MAX_CHANNELS_PER_REQUEST, RELAY_ID_RE

CORRELATION_METADATA = "x-correlation-id"
# A relay's batch of handshakes (chatcore.coalesce); the relay sends at most its LOOKUP_BATCH.
MAX_USERS_PER_BATCH = 256


def checked_id(value: str, name: str) -> str:
    if not ID_RE.fullmatch(value):
        raise InvalidInput(f"{name} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def checked_ids(
    values: Iterable[str], name: str, *, most: int = MAX_CHANNELS_PER_REQUEST
) -> list[str]:
    ids = list(values)
    if len(ids) > most:
        raise InvalidInput(f"{name} names more than {most} ids")
    return [checked_id(value, name) for value in ids]


def checked_user_batch(values: Iterable[str]) -> list[str]:
    """The user ids of a ``GetMembershipsBatch``: 1 to ``MAX_USERS_PER_BATCH``, each valid."""
    ids = checked_ids(values, "user_ids", most=MAX_USERS_PER_BATCH)
    if not ids:
        raise InvalidInput("user_ids must name at least one user")
    return ids


def checked_relay_id(value: str) -> str:
    if not RELAY_ID_RE.fullmatch(value):
        raise InvalidInput(
            "the first SubscribeRequest must carry a relay_id (1-64 safe characters)"
        )
    return value


def correlation_id(context: aio.ServicerContext[object, object]) -> str | None:
    """The caller's ``x-correlation-id`` metadata when it is a plain short token."""
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_METADATA and isinstance(value, str):
            return value if CORRELATION_ID_RE.fullmatch(value) else None
    return None
