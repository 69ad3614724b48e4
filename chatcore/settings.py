"""One frozen ``Settings`` built from environment variables at start-up and passed down.

Every variable is documented in docs/configuration.md. Nothing else reads the environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from chatcore.errors import ConfigError
from chatcore.messages import RELAY_ID_RE
from chatcore.proxies import networks
from chatcore.settings_bounds import BOUNDS

__all__ = ["ConfigError", "Settings"]

T = TypeVar("T")

# The asymmetric algorithms tokens may be signed with (chatcore.tokens pins each to its key type).
JWT_ALGORITHMS = frozenset({"EdDSA", "ES256"})

# What CHAT_LOG_LEVEL may name (the standard library's levels; configure_logging takes these).
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    # "inf" and "nan" parse, but no time, rate or size here means either.
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    return value


def _tuple(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _str(_name: str, raw: str) -> str:
    return raw


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "int": _int,
    "float": _float,
    "tuple[str, ...]": _tuple,
    "str": _str,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of every service; each field maps to ``CHAT_<FIELD NAME IN UPPER CASE>``."""

    log_level: str = "info"
    # The event loop every service runs on: uvloop (default) or asyncio.
    event_loop: str = "uvloop"
    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_messages_partitions: int = 6
    kafka_replication_factor: int = 1
    # Topics' min.insync.replicas: with acks=all a record is acknowledged once this many replicas
    # have it (2 of 3 in a three-broker cluster: one broker may die without losing an ack).
    kafka_min_insync_replicas: int = 1
    # Consumer-group liveness: a member silent this long is dropped and its partitions move
    # (a controller killed with -9 is noticed within it); heartbeats go out this often.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1500
    kafka_linger_ms: int = 5
    kafka_request_timeout_ms: int = 15000
    relay_producer: str = "rdkafka"
    relay_write_window_ms: float = 100.0
    # Frames for at most this many sockets of one relay (a DM, a small team) skip the window.
    relay_write_window_audience: int = 16
    # MongoDB wire protocol (FerretDB locally, MongoDB in production)
    # May carry a password (compose's app user): kept out of reprs and logs.
    mongo_url: str = field(default="mongodb://127.0.0.1:27017/", repr=False)
    mongo_db: str = "chat"
    mongo_timeout_ms: int = 5000
    # S3-compatible object store
    s3_endpoint: str = "http://127.0.0.1:7070"
    s3_region: str = "us-east-1"
    s3_bucket: str = "chat-attachments"
    s3_access_key: str = ""
    s3_secret_key: str = field(default="", repr=False)
    # Tokens
    jwks_url: str = "http://127.0.0.1:8080/v1/auth/jwks"
    jwt_issuer: str = "chatstack-auth"
    jwt_audience: str = "chatstack"
    jwt_algorithms: tuple[str, ...] = ("EdDSA", "ES256")
    jwks_cache_s: float = 300.0
    # After the cache expired, keys keep verifying this long while refetches fail.
    jwks_stale_s: float = 24 * 3600.0
    # With no usable keys at all, a request waits this long for the one fetch in flight.
    jwks_wait_s: float = 2.0
    jwt_leeway_s: float = 5.0
    # HTTP services
    http_host: str = "127.0.0.1"
    max_body_bytes: int = 65536
    drain_timeout_s: float = 10.0
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # Shared secret of the internal gRPC API (relays -> controllers); required by both.
    internal_token: str = field(default="", repr=False)
    # Auth service
    auth_port: int = 8101
    auth_signing_keys: tuple[str, ...] = ()
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    refresh_sweep_interval_s: float = 3600.0
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 2
    # Password checks run in this many threads of their own; one that finds them all busy waits
    # this long for one, then answers 503 (a flood must not queue without end).
    argon2_workers: int = 2
    argon2_wait_s: float = 5.0
    login_ip_burst: int = 20
    login_ip_per_minute: float = 20.0
    login_email_burst: int = 5
    login_email_per_minute: float = 5.0
    register_ip_burst: int = 10
    register_ip_per_minute: float = 10.0
    # Successful logins per account: a password's holder cannot keep argon2 busy for everyone.
    login_account_burst: int = 10
    login_account_per_minute: float = 10.0
    # Logins (refresh-token families) one account keeps at most; a new one past it ends the
    # least recently refreshed.
    logins_per_account: int = 100
    # Name and password changes per account (the password check also counts as a login attempt).
    account_change_burst: int = 5
    account_change_per_minute: float = 10.0
    # Lookups by email (GET /v1/users?email=) per account: each tells whether an address has an
    # account, so a token must not turn them into a fast enumeration.
    email_lookup_burst: int = 30
    email_lookup_per_minute: float = 30.0
    # Keys each auth limiter tracks at most; penalised ones are never forgotten to make room.
    login_tracked_keys: int = 100_000
    # Controller service
    controller_grpc_port: int = 50051
    controller_http_port: int = 8111
    controller_group_id: str = "chat-controller"
    controller_offset_reset: str = "earliest"
    controller_batch_max: int = 2000
    # A batch's messages are inserted as this many concurrent insert commands (contiguous slices),
    # so the database spreads one batch over several cores.
    controller_insert_parallel: int = 2
    controller_poll_timeout_ms: int = 500
    controller_stream_queue: int = 1000
    controller_stream_queue_bytes: int = 64 * 1024 * 1024
    controller_delivery_batch_bytes: int = 1024 * 1024
    controller_retry_max_s: float = 5.0
    controller_start_grace_s: float = 2.0
    # Read state and channel counters are written behind the fan-out, gathered this long so a
    # busy document is written once for many messages; offsets are committed after them.
    controller_state_flush_ms: int = 1000
    # Discovery: each controller announces this address on chat.controllers.v1 this often
    # (empty: the bound host and gRPC port; the machine's name when bound to every interface).
    controller_advertise_addr: str = ""
    controller_announce_interval_s: float = 2.0
    # Management service
    management_port: int = 8102
    auth_url: str = "http://127.0.0.1:8101"
    auth_timeout_s: float = 5.0
    # Membership-event outbox: how often pending events are retried, how long one send may take.
    outbox_retry_interval_s: float = 5.0
    outbox_send_timeout_s: float = 5.0
    # Leases (chatcore/leases.py) that keep management and auth instances' conditional writes
    # apart: how long one is valid, how long a request waits for a busy one.
    lease_ttl_s: float = 10.0
    lease_wait_s: float = 5.0
    # Per-user token bucket over team, member, role and attachment writes.
    management_write_burst: int = 100
    management_write_per_s: float = 5.0
    # The most teams one account may be in (creating one, or being added): every handshake reads
    # them all, hello lists them, and a relay subscribes to each.
    management_teams_per_user_max: int = 1000
    # Concurrent history and team-list scans per instance; a request waits this long for a slot.
    management_scan_concurrency: int = 16
    management_scan_wait_s: float = 1.0
    # Of those, how many one user may hold at once, so one account cannot take them all.
    management_scans_per_user: int = 4
    # Per-user token bucket over read marks (PUT .../read): clients mark read as messages come
    # into view, a few times a second at most; each mark is a database lookup and a Kafka record.
    management_read_burst: int = 30
    management_read_per_s: float = 3.0
    # Attachments (management service): presigned S3 uploads, clamd scan, sweep of stale uploads
    attachment_max_bytes: int = 5 * 1024 * 1024
    attachment_upload_ttl_s: int = 900
    attachment_download_ttl_s: int = 300
    attachment_pending_max_age_s: float = 3600.0
    # Bytes one account may hold in attachments it requested in the last 24 hours (pending or
    # ready): what bounds the store's growth, since files need not be sent to take space.
    attachment_bytes_per_user_day: int = 1024 * 1024 * 1024
    attachment_sweep_interval_s: float = 300.0
    # The S3 endpoint clients reach (presigned URLs sign the host); empty: ``s3_endpoint``.
    s3_public_endpoint: str = ""
    # clamd: ``host:port`` for TCP or an absolute path (``/run/clamav/clamd.ctl``) for a socket.
    clamd_address: str = "127.0.0.1:3310"
    clamd_timeout_s: float = 30.0
    # Relay
    relay_port: int = 8103
    relay_id: str = ""
    controller_addrs: tuple[str, ...] = ("127.0.0.1:50051",)
    ws_origins: tuple[str, ...] = ("http://127.0.0.1:8080", "http://localhost:8080")
    ws_max_frame_bytes: int = 65536
    ws_heartbeat_s: int = 20
    ws_send_buffer_bytes: int = 1024 * 1024
    ws_rate_burst: int = 30
    ws_rate_per_s: float = 15.0
    # And per user across their sockets on one relay: more sockets are no more messages.
    ws_user_rate_burst: int = 60
    ws_user_rate_per_s: float = 30.0
    ws_typing_burst: int = 5
    ws_typing_per_s: float = 1.0
    ws_max_connections_per_user: int = 10
    # How long a new socket waits for the controllers to confirm its channels before ``hello``.
    relay_subscribe_timeout_s: float = 2.0
    # The membership audit re-reads every channel's members at least this often.
    relay_audit_interval_s: float = 60.0
    # Pending TCP connections the kernel queues for the relay (capped by net.core.somaxconn):
    # asyncio's default of 100 drops the rest of a reconnect storm's SYNs, which clients resend
    # only after 1 s, 3 s, 7 s.
    relay_listen_backlog: int = 4096
    # Presence (chatcore.presence): a relay publishes a snapshot of its users this often, and
    # readers keep a silent relay's users for three of them; a user whose last socket closed is
    # gone only after the grace; a draining relay's users are kept this long for their reconnect.
    presence_heartbeat_s: float = 10.0
    presence_grace_s: float = 1.0
    presence_leaving_s: float = 10.0
    # The message life cycle (DESIGN 5b): how long an author may edit or delete their message.
    edit_window_s: float = 300.0

    @property
    def presence_ttl_s(self) -> float:
        """How long readers keep a relay's users without hearing from it: three heartbeats."""
        return 3 * self.presence_heartbeat_s

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``CHAT_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"CHAT_{f.name.upper()}"
            raw = env.get(name)
            if raw is None:
                continue
            parser = _PARSERS[str(f.type)]
            values[f.name] = parser(name, raw.strip())
        settings = cls(**values)
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """The ``CHAT_*`` variables that rebuild these settings (for starting a subprocess)."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            env[f"CHAT_{f.name.upper()}"] = text
        return env

    def validate(self) -> None:
        """Reject values and combinations that cannot work, naming the variable to fix."""
        for name, bound in BOUNDS.items():
            bound.check(f"CHAT_{name.upper()}", getattr(self, name))
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ConfigError(f"CHAT_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS).lower()}")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise ConfigError("CHAT_EVENT_LOOP must be uvloop or asyncio")
        if self.relay_id and not RELAY_ID_RE.fullmatch(self.relay_id):
            raise ConfigError(
                "CHAT_RELAY_ID must be 1-64 characters of A-Z, a-z, 0-9, '.', ':', '_', '-'"
            )
        if self.relay_producer not in ("rdkafka", "aiokafka"):
            raise ConfigError("CHAT_RELAY_PRODUCER must be rdkafka or aiokafka")
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ConfigError(
                "CHAT_KAFKA_MIN_INSYNC_REPLICAS must be between 1 and CHAT_KAFKA_REPLICATION_FACTOR"
            )
        if 3 * self.kafka_heartbeat_interval_ms > self.kafka_session_timeout_ms:
            raise ConfigError(
                "CHAT_KAFKA_HEARTBEAT_INTERVAL_MS must be positive and at most a third of "
                "CHAT_KAFKA_SESSION_TIMEOUT_MS"
            )
        if not self.jwt_algorithms or not set(self.jwt_algorithms) <= JWT_ALGORITHMS:
            raise ConfigError(
                f"CHAT_JWT_ALGORITHMS must name one or more of {', '.join(sorted(JWT_ALGORITHMS))}"
            )
        self._validate_addresses()
        if self.refresh_token_ttl_s < self.access_token_ttl_s:
            raise ConfigError("CHAT_REFRESH_TOKEN_TTL_S must not be shorter than the access TTL")
        if not self.controller_addrs:
            raise ConfigError("CHAT_CONTROLLER_ADDRS must name at least one controller")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ConfigError("CHAT_ARGON2_MEMORY_KIB must be at least 8 x CHAT_ARGON2_PARALLELISM")
        if self.controller_offset_reset not in ("earliest", "latest"):
            raise ConfigError("CHAT_CONTROLLER_OFFSET_RESET must be earliest or latest")
        if not self.controller_group_id.strip():
            raise ConfigError("CHAT_CONTROLLER_GROUP_ID must not be empty")
        if self.controller_stream_queue_bytes < self.controller_delivery_batch_bytes:
            raise ConfigError(
                "CHAT_CONTROLLER_STREAM_QUEUE_BYTES must be at least "
                "CHAT_CONTROLLER_DELIVERY_BATCH_BYTES"
            )
        if self.controller_advertise_addr and not _is_host_port(self.controller_advertise_addr):
            raise ConfigError("CHAT_CONTROLLER_ADVERTISE_ADDR must be host:port (or empty)")
        if not self.auth_url.startswith(("http://", "https://")):
            raise ConfigError("CHAT_AUTH_URL must be an http:// or https:// URL")
        self._validate_attachments()
        if self.management_scans_per_user > self.management_scan_concurrency:
            raise ConfigError(
                "CHAT_MANAGEMENT_SCANS_PER_USER must not exceed CHAT_MANAGEMENT_SCAN_CONCURRENCY"
            )

    def _validate_addresses(self) -> None:
        """Where the services bind and what they reach: empty or malformed values would bind
        every interface, or fail only at the first connection with a message naming no variable."""
        if not self.http_host.strip():
            raise ConfigError("CHAT_HTTP_HOST must not be empty (0.0.0.0 binds every interface)")
        for name, value in (
            ("CHAT_KAFKA_BOOTSTRAP", self.kafka_bootstrap),
            ("CHAT_MONGO_DB", self.mongo_db),
            ("CHAT_JWT_ISSUER", self.jwt_issuer),
            ("CHAT_JWT_AUDIENCE", self.jwt_audience),
        ):
            if not value.strip():
                raise ConfigError(f"{name} must not be empty")
        if not self.mongo_url.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError("CHAT_MONGO_URL must be a mongodb:// or mongodb+srv:// URL")
        for name, value in (
            ("CHAT_JWKS_URL", self.jwks_url),
            ("CHAT_S3_ENDPOINT", self.s3_endpoint),
        ):
            if not value.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http:// or https:// URL")
        try:
            networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"CHAT_TRUSTED_PROXIES: {exc}") from None

    def _validate_attachments(self) -> None:
        # A pending upload younger than its policy may still arrive: never sweep it that early.
        if self.attachment_pending_max_age_s < self.attachment_upload_ttl_s:
            raise ConfigError(
                "CHAT_ATTACHMENT_PENDING_MAX_AGE_S must not be shorter than "
                "CHAT_ATTACHMENT_UPLOAD_TTL_S"
            )
        # Else a file of the largest size would be refused as over the day's quota for good.
        if self.attachment_bytes_per_user_day < self.attachment_max_bytes:
            raise ConfigError(
                "CHAT_ATTACHMENT_BYTES_PER_USER_DAY must not be smaller than "
                "CHAT_ATTACHMENT_MAX_BYTES"
            )
        if self.s3_public_endpoint and not self.s3_public_endpoint.startswith(
            ("http://", "https://")
        ):
            raise ConfigError("CHAT_S3_PUBLIC_ENDPOINT must be an http:// or https:// URL")
        if not self.clamd_address.strip():
            raise ConfigError("CHAT_CLAMD_ADDRESS must not be empty")


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host.strip("[]") and port.isdigit() and 0 < int(port) <= 65535)
