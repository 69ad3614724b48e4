"""Where the local stack lives and what it listens on: ``StackConfig`` from the ``CHATSTACK_*``
variables, the secrets it generates once into its home, and the ``CHAT_*`` settings that point
services and tests at it."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local.datadirs import (
    DEFAULT_SYSTEM_DATA,
    shared_folder,
)
from deploy.local.nginx import EdgeLimits
from deploy.local.processes import StackError

REPO = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.1.1"
FERRETDB_VERSION = "v1.24.2"
VERSITYGW_VERSION = "v1.7.0"


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Where the stack lives and which loopback ports it uses (``CHATSTACK_*`` variables)."""

    home: Path
    cache: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    mongo_port: int = 27017
    db_backend: str = "postgresql"
    postgres_port: int = 5433
    ferretdb_debug_port: int = 8089
    s3_port: int = 7070
    clamd_port: int = 3310
    nginx_port: int = 8080
    auth_port: int = 8101
    management_port: int = 8102
    relay_ports: tuple[int, ...] = (8103, 8104)
    controller_grpc_port: int = 50051
    controller_http_port: int = 8111
    messages_partitions: int = 6
    # Topology (CHATSTACK_CONTROLLERS, _MANAGEMENT, _AUTH, _KAFKA_BROKERS): instance i > 1 of a
    # kind listens on its first instance's port(s) + 100 * (i - 1) (``instance_ports``).
    controllers: int = 1
    management_instances: int = 1
    auth_instances: int = 1
    kafka_brokers: int = 1
    # As root, PostgreSQL's data lives here (datadirs.py): the postgres user must reach it.
    system_data: Path = DEFAULT_SYSTEM_DATA
    edge_limits: EdgeLimits = field(default_factory=EdgeLimits)
    # Browser origins allowed on the WebSocket; empty: nginx's own address on this stack's port.
    ws_origins: str = ""

    @classmethod
    def from_env(cls) -> StackConfig:
        env = os.environ
        cache = Path(env.get("CHATSTACK_CACHE", Path.home() / ".cache" / "chatstack"))
        limits = EdgeLimits()
        return cls(
            home=Path(env.get("CHATSTACK_HOME", REPO / ".stack")).resolve(),
            cache=cache.resolve(),
            kafka_port=_port(env, "CHATSTACK_KAFKA_PORT", 9092),
            kafka_controller_port=_port(env, "CHATSTACK_KAFKA_CONTROLLER_PORT", 9093),
            mongo_port=_port(env, "CHATSTACK_MONGO_PORT", 27017),
            db_backend=_choice(env, "CHATSTACK_DB_BACKEND", ("postgresql", "sqlite")),
            postgres_port=_port(env, "CHATSTACK_POSTGRES_PORT", 5433),
            ferretdb_debug_port=_port(env, "CHATSTACK_FERRETDB_DEBUG_PORT", 8089),
            s3_port=_port(env, "CHATSTACK_S3_PORT", 7070),
            clamd_port=_port(env, "CHATSTACK_CLAMD_PORT", 3310),
            nginx_port=_port(env, "CHATSTACK_NGINX_PORT", 8080),
            auth_port=_port(env, "CHATSTACK_AUTH_PORT", 8101),
            management_port=_port(env, "CHATSTACK_MANAGEMENT_PORT", 8102),
            relay_ports=_ports(env, "CHATSTACK_RELAY_PORTS", "8103,8104"),
            controller_grpc_port=_port(env, "CHATSTACK_CONTROLLER_GRPC_PORT", 50051),
            controller_http_port=_port(env, "CHATSTACK_CONTROLLER_HTTP_PORT", 8111),
            messages_partitions=_whole(env, "CHATSTACK_MESSAGES_PARTITIONS", 6, 1, 1000),
            controllers=_count(env, "CHATSTACK_CONTROLLERS"),
            management_instances=_count(env, "CHATSTACK_MANAGEMENT"),
            auth_instances=_count(env, "CHATSTACK_AUTH"),
            kafka_brokers=_count(env, "CHATSTACK_KAFKA_BROKERS", allowed=(1, 3)),
            system_data=Path(env.get("CHATSTACK_SYSTEM_DATA", DEFAULT_SYSTEM_DATA)).resolve(),
            edge_limits=EdgeLimits(
                api_rate_per_s=_whole(env, "CHATSTACK_NGINX_API_RATE", limits.api_rate_per_s),
                api_burst=_whole(env, "CHATSTACK_NGINX_API_BURST", limits.api_burst),
                ws_connections_per_address=_whole(
                    env,
                    "CHATSTACK_NGINX_WS_CONNECTIONS_PER_ADDRESS",
                    limits.ws_connections_per_address,
                ),
                requests_in_flight_per_address=_whole(
                    env,
                    "CHATSTACK_NGINX_REQUESTS_PER_ADDRESS",
                    limits.requests_in_flight_per_address,
                ),
            ),
            ws_origins=env.get("CHAT_WS_ORIGINS", ""),
        )

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def auth_ports(self) -> tuple[int, ...]:
        return instance_ports(self.auth_port, self.auth_instances)

    @property
    def management_ports(self) -> tuple[int, ...]:
        return instance_ports(self.management_port, self.management_instances)

    @property
    def controller_grpc_ports(self) -> tuple[int, ...]:
        return instance_ports(self.controller_grpc_port, self.controllers)

    @property
    def controller_http_ports(self) -> tuple[int, ...]:
        return instance_ports(self.controller_http_port, self.controllers)

    @property
    def kafka_ports(self) -> tuple[int, ...]:
        return instance_ports(self.kafka_port, self.kafka_brokers)

    @property
    def kafka_controller_ports(self) -> tuple[int, ...]:
        return instance_ports(self.kafka_controller_port, self.kafka_brokers)

    @property
    def replication(self) -> int:
        """Replication factor of every topic, internal ones included: one copy per broker."""
        return self.kafka_brokers

    @property
    def min_insync(self) -> int:
        """A record is acknowledged once a majority of its replicas have it."""
        return self.kafka_brokers // 2 + 1

    @property
    def postgres_data(self) -> Path:
        """PostgreSQL's data folder: in the home, or outside it when we are root (datadirs.py)."""
        if os.geteuid() == 0:
            return shared_folder(self.home, self.system_data) / "postgres"
        return self.data / "postgres"

    @property
    def kafka_libs(self) -> Path:
        return self.cache / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def ferretdb_bin(self) -> Path:
        return self.cache / "bin" / f"ferretdb-{FERRETDB_VERSION}"

    @property
    def versitygw_bin(self) -> Path:
        return self.cache / "bin" / f"versitygw-{VERSITYGW_VERSION}"


def instance_ports(first: int, count: int) -> tuple[int, ...]:
    """The ports of ``count`` instances of a kind: the first one's, then +100 for each next one
    (8102, 8202, ...), so a topology never moves the single-instance ports."""
    return tuple(first + 100 * i for i in range(count))


def instance_name(kind: str, index: int) -> str:
    """``kind`` for the first instance (the names scripts and docs know), ``kind-2`` on."""
    return kind if index == 0 else f"{kind}-{index + 1}"


def _whole(
    env: Mapping[str, str], name: str, default: int, low: int = 1, high: int = 1_000_000
) -> int:
    """A whole number from ``name`` between ``low`` and ``high``, or a ``StackError`` naming it."""
    return _parse_whole(name, env.get(name, str(default)), low, high)


def _parse_whole(name: str, raw: str, low: int, high: int) -> int:
    raw = raw.strip()
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise StackError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _whole(env, name, default, 1, 65535)


def _ports(env: Mapping[str, str], name: str, default: str) -> tuple[int, ...]:
    parts = [p.strip() for p in env.get(name, default).split(",") if p.strip()]
    if not parts:
        raise StackError(f"{name} must name at least one port (comma-separated)")
    return tuple(_parse_whole(name, p, 1, 65535) for p in parts)


def _choice(env: Mapping[str, str], name: str, choices: Sequence[str]) -> str:
    value = env.get(name, choices[0]).strip()
    if value not in choices:
        raise StackError(f"{name} must be {' or '.join(choices)}, got {value!r}")
    return value


def _count(env: Mapping[str, str], name: str, *, allowed: Sequence[int] | None = None) -> int:
    value = _whole(env, name, 1, 1, 9)
    if allowed is not None and value not in allowed:
        raise StackError(f"{name} must be {' or '.join(map(str, allowed))}, got {value}")
    return value


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its creation: ``write_text`` then ``chmod``
    would leave it readable by everyone (umask 022) in between."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def s3_credentials(cfg: StackConfig) -> tuple[str, str]:
    """Development S3 keys, generated once into the stack folder (never in code or git)."""
    path = cfg.home / "secrets" / "s3.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        creds = {"access_key": "chat" + secrets.token_hex(8), "secret_key": secrets.token_hex(24)}
        write_private(path, json.dumps(creds))
    creds = json.loads(path.read_text())
    return str(creds["access_key"]), str(creds["secret_key"])


def _internal_token(cfg: StackConfig) -> str:
    """The internal gRPC secret of this stack, generated once into the stack folder."""
    path = cfg.home / "secrets" / "internal-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def dev_signing_key(cfg: StackConfig) -> Path:
    """The development JWT signing key, generated once into the stack folder."""
    from services.auth.keys import generate_key_file

    path = cfg.home / "secrets" / "jwt-dev-1.pem"
    if not path.exists():
        generate_key_file(path)
    return path


def service_env(cfg: StackConfig) -> dict[str, str]:
    """The ``CHAT_*`` settings that point services and tests at this stack."""
    access, secret = s3_credentials(cfg)
    return {
        "CHAT_AUTH_PORT": str(cfg.auth_port),
        "CHAT_AUTH_URL": f"http://127.0.0.1:{cfg.auth_port}",
        "CHAT_MANAGEMENT_PORT": str(cfg.management_port),
        "CHAT_CONTROLLER_ADDRS": ",".join(f"127.0.0.1:{p}" for p in cfg.controller_grpc_ports),
        "CHAT_CONTROLLER_GRPC_PORT": str(cfg.controller_grpc_port),
        "CHAT_CONTROLLER_HTTP_PORT": str(cfg.controller_http_port),
        "CHAT_AUTH_SIGNING_KEYS": str(dev_signing_key(cfg)),
        "CHAT_KAFKA_BOOTSTRAP": ",".join(f"127.0.0.1:{p}" for p in cfg.kafka_ports),
        "CHAT_KAFKA_REPLICATION_FACTOR": str(cfg.replication),
        "CHAT_KAFKA_MIN_INSYNC_REPLICAS": str(cfg.min_insync),
        "CHAT_KAFKA_MESSAGES_PARTITIONS": str(cfg.messages_partitions),
        # A controller killed with -9 leaves the group after 4.5 s instead of 6 (the brokers above
        # allow it): its partitions move, with the rebalance and the restarted controller
        # rejoining, well inside the 10 s the scale tests allow on two shared cores.
        "CHAT_KAFKA_SESSION_TIMEOUT_MS": "4500",
        # At most 10 operations in flight per service process: FerretDB's 50 PostgreSQL
        # connections deadlock when about 50 updates overlap (chatcore.mongo.DB_CONCURRENCY).
        "CHAT_MONGO_URL": f"mongodb://127.0.0.1:{cfg.mongo_port}/?maxPoolSize=10",
        "CHAT_S3_ENDPOINT": f"http://127.0.0.1:{cfg.s3_port}",
        "CHAT_S3_ACCESS_KEY": access,
        "CHAT_S3_SECRET_KEY": secret,
        "CHAT_CLAMD_ADDRESS": f"127.0.0.1:{cfg.clamd_port}",
        "CHAT_WS_ORIGINS": cfg.ws_origins
        or f"http://127.0.0.1:{cfg.nginx_port},http://localhost:{cfg.nginx_port}",
        "CHAT_INTERNAL_TOKEN": _internal_token(cfg),
        "CHAT_JWKS_URL": f"http://127.0.0.1:{cfg.nginx_port}/v1/auth/jwks",
        "CHATSTACK_NGINX_URL": f"http://127.0.0.1:{cfg.nginx_port}",
        "CHATSTACK_HOME": str(cfg.home),
    }
