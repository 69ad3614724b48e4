"""One frozen ``Settings`` built from environment variables at start-up and passed down.

Every variable is documented in docs/configuration.md. Nothing else reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from chatcore.errors import InvalidInput

T = TypeVar("T")


class ConfigError(InvalidInput):
    """An environment variable is missing or malformed: fix the configuration and restart."""

    code = "config"


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


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
    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_messages_partitions: int = 6
    kafka_replication_factor: int = 1
    kafka_linger_ms: int = 5
    kafka_request_timeout_ms: int = 15000
    # MongoDB wire protocol (FerretDB locally, MongoDB in production)
    mongo_url: str = "mongodb://127.0.0.1:27017/"
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
    jwt_leeway_s: float = 5.0
    # HTTP services
    http_host: str = "127.0.0.1"
    max_body_bytes: int = 65536
    drain_timeout_s: float = 10.0
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # Auth service
    auth_port: int = 8101
    auth_signing_keys: tuple[str, ...] = ()
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    refresh_sweep_interval_s: float = 3600.0
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 2
    login_ip_burst: int = 20
    login_ip_per_minute: float = 20.0
    login_email_burst: int = 5
    login_email_per_minute: float = 5.0
    register_ip_burst: int = 10
    register_ip_per_minute: float = 10.0

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

    def validate(self) -> None:
        """Reject combinations that cannot work, naming the variable to fix."""
        if self.kafka_messages_partitions < 1:
            raise ConfigError("CHAT_KAFKA_MESSAGES_PARTITIONS must be at least 1")
        if not self.jwt_algorithms:
            raise ConfigError("CHAT_JWT_ALGORITHMS must name at least one algorithm")
        if self.max_body_bytes < 1024:
            raise ConfigError("CHAT_MAX_BODY_BYTES must be at least 1024")
        if not 60 <= self.access_token_ttl_s <= 3600:
            raise ConfigError("CHAT_ACCESS_TOKEN_TTL_S must be between 60 and 3600 seconds")
        if self.refresh_token_ttl_s < self.access_token_ttl_s:
            raise ConfigError("CHAT_REFRESH_TOKEN_TTL_S must not be shorter than the access TTL")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ConfigError("CHAT_ARGON2_MEMORY_KIB must be at least 8 x CHAT_ARGON2_PARALLELISM")
