"""The one root exception of the chat backend and the families that say how to handle a failure.

Callers catch only at boundaries (HTTP middleware, WebSocket handler, gRPC servicer, Kafka consumer
loop) and translate to the protocol's status. The family tells the boundary what to do:

* ``InvalidInput`` and its children: the request or record itself is bad. Answer with a client error
  or dead-letter the record; retrying the same input can never succeed.
* ``Unavailable``: a dependency failed. Retry later (with backoff) or answer 503.
* ``ConfigError``: the service itself is misconfigured. Stop at start-up and name the variable;
  never answer a client with it (it is not the client's fault) and never retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class ChatError(Exception):
    """Root of every error this project raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = dict(details or {})

    @property
    def public_message(self) -> str:
        """What a client is told. A server-side failure's own text names internal hosts, ports
        and dependencies' replies ("clamd at clamd:3310 ..."): that goes to the log only."""
        if self.http_status < 500:
            return self.message
        if isinstance(self, Unavailable):
            return "temporarily unavailable; retry later"
        return "internal server error"


class ConfigError(ChatError):
    """An environment variable is missing or malformed: fix the configuration and restart."""

    code = "config"


class InvalidInput(ChatError):
    """The input is malformed or breaks a rule: reject it (or dead-letter it); never retry."""

    code = "invalid"
    http_status = 422


class MalformedBody(InvalidInput):
    """The body could not be parsed at all (not JSON, wrong encoding)."""

    code = "malformed"
    http_status = 400


class TooLarge(InvalidInput):
    """The input exceeds a size limit."""

    code = "too_large"
    http_status = 413


class Unauthorized(ChatError):
    """No valid credentials: the caller must authenticate again."""

    code = "unauthorized"
    http_status = 401


class Forbidden(ChatError):
    """Authenticated, but the caller's role does not allow this."""

    code = "forbidden"
    http_status = 403


class NotFound(ChatError):
    """The thing does not exist, or the caller may not know that it does."""

    code = "not_found"
    http_status = 404


class Conflict(ChatError):
    """The change clashes with the current state (duplicate, lost race): re-read and decide."""

    code = "conflict"
    http_status = 409


class RateLimited(ChatError):
    """Too many requests: retry after ``retry_after`` seconds."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ChatError):
    """A dependency (Kafka, database, another service) failed: retry with backoff, or answer 503."""

    code = "unavailable"
    http_status = 503


class Busy(Unavailable):
    """Every slot of a bounded resource stayed taken: retry after ``retry_after`` seconds (503
    with ``Retry-After``). The message is written for the client and names nothing internal."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def public_message(self) -> str:
        return self.message
