"""The local stack's components: Kafka (KRaft), FerretDB, the S3 server, clamd and nginx.

Each factory returns a ``Component`` for the generic runner in ``processes.py``: its command line,
how to prepare its config and data folders, how to tell it is ready, and what to set up once it is
(topics, indexes, the bucket). Binaries come from ``deploy/local/install.sh``'s cache.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local.datadirs import (
    DEFAULT_SYSTEM_DATA,
    check_traversable,
    postmaster_running,
    prepare_shared_folder,
    prune_orphans,
    shared_folder,
)
from deploy.local.nginx import LOCAL_WEB_ROOT, EdgeLimits, chat_routes, render_nginx_conf
from deploy.local.processes import Component, StackError, http_answers, http_ok, port_open

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


def _s3_credentials(cfg: StackConfig) -> tuple[str, str]:
    """Development S3 keys, generated once into the stack folder (never in code or git)."""
    path = cfg.home / "secrets" / "s3.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        creds = {"access_key": "chat" + secrets.token_hex(8), "secret_key": secrets.token_hex(24)}
        path.write_text(json.dumps(creds))
        path.chmod(0o600)
    creds = json.loads(path.read_text())
    return str(creds["access_key"]), str(creds["secret_key"])


def _internal_token(cfg: StackConfig) -> str:
    """The internal gRPC secret of this stack, generated once into the stack folder."""
    path = cfg.home / "secrets" / "internal-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
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
    access, secret = _s3_credentials(cfg)
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


# --- Kafka -------------------------------------------------------------------------------------


def _kafka_cluster_id() -> str:
    # Kafka's own format: 16 random bytes, URL-safe base64 without padding, not starting with "-".
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _kafka_cluster_id_of(cfg: StackConfig) -> str:
    """One cluster id for every broker of this stack, generated once into its folder."""
    path = cfg.home / "kafka" / "cluster-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_kafka_cluster_id())
    return path.read_text().strip()


def kafka_properties(cfg: StackConfig, index: int, data_dir: Path) -> str:
    """server.properties of broker ``index``: a combined broker and KRaft controller.

    With three brokers every topic, ``__consumer_offsets`` included, has three replicas and
    needs two in sync to acknowledge a write (docs/decisions.md, "Three brokers").
    """
    port, controller = cfg.kafka_ports[index], cfg.kafka_controller_ports[index]
    voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(cfg.kafka_controller_ports))
    rf, isr = cfg.replication, cfg.min_insync
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={index + 1}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"default.replication.factor={rf}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            f"min.insync.replicas={isr}",
            # A broker killed with -9 is fenced by the quorum after this long without a
            # heartbeat; its partitions' leadership moves and acks=all sends resume (the
            # broker-loss test measures the gap). Kafka's default is 9 s.
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
            # A follower this far behind leaves the ISR (default 30 s): a dead one then stops
            # counting towards min.insync.replicas sooner.
            "replica.lag.time.max.ms=5000",
            # Tests start consumers constantly; a rebalance delay would only slow them.
            "group.initial.rebalance.delay.ms=0",
            # Lets the stack's controllers use a 4.5 s session (service_env): Kafka's floor is 6 s.
            "group.min.session.timeout.ms=3000",
            "",
        ]
    )


def kafka_component(cfg: StackConfig, index: int = 0) -> Component:
    """Broker ``index`` (0-based) of the stack's KRaft cluster, from the same jars."""
    name = instance_name("kafka", index)
    conf_dir = cfg.home / "kafka"
    data_dir = cfg.data / name
    props = conf_dir / f"{name}.properties" if index else conf_dir / "server.properties"
    classpath = f"{cfg.kafka_libs}/*"
    heap = "-Xmx768m" if cfg.kafka_brokers == 1 else "-Xmx512m"
    java_opts = [
        "-Xms256m",
        heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={REPO / 'deploy/local/kafka/log4j2.properties'}",
        f"-Dkafka.logs.dir={cfg.home / 'logs'}",
    ]
    port, controller_port = cfg.kafka_ports[index], cfg.kafka_controller_ports[index]
    last = index == cfg.kafka_brokers - 1

    def prepare() -> None:
        if not cfg.kafka_libs.is_dir():
            raise StackError(
                f"kafka: jars missing in {cfg.kafka_libs}; run deploy/local/install.sh"
            )
        conf_dir.mkdir(parents=True, exist_ok=True)
        props.write_text(kafka_properties(cfg, index, data_dir))
        if not (data_dir / "meta.properties").exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fmt = subprocess.run(
                [
                    "java",
                    *java_opts,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _kafka_cluster_id_of(cfg),
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise StackError(f"{name}: storage format failed:\n{fmt.stdout}\n{fmt.stderr}")

    def ready() -> bool:
        if not last:
            # The quorum needs a majority of the voters, which start after this one: a broker
            # before the last is ready once its controller listener is up.
            return port_open(controller_port)
        return port_open(port) and asyncio.run(_kafka_metadata_ok(cfg))

    def after_ready() -> None:
        created = asyncio.run(_create_topics(cfg))
        if created:
            print(f"[stack] kafka: created topics {', '.join(created)}")

    return Component(
        name=name,
        argv=["java", *java_opts, "-cp", classpath, "kafka.Kafka", str(props)],
        ready=ready,
        ports=(port, controller_port),
        prepare=prepare,
        after_ready=after_ready if last else None,
        ready_timeout_s=120.0,
        stop_timeout_s=30.0,
    )


async def _kafka_metadata_ok(cfg: StackConfig) -> bool:
    from aiokafka.errors import KafkaError

    from chatcore.kafka import make_admin
    from chatcore.settings import Settings

    admin = make_admin(Settings.from_env(service_env(cfg)), client_id="chatstack-probe")
    try:
        await asyncio.wait_for(admin.start(), 5)
        cluster = await asyncio.wait_for(admin.describe_cluster(), 5)
        # Every broker registered: topics with one replica per broker can be created.
        return len(cluster.get("brokers", ())) >= cfg.kafka_brokers
    except (KafkaError, OSError, TimeoutError):
        return False  # the broker is still electing itself or loading its logs
    finally:
        await admin.close()


async def _create_topics(cfg: StackConfig) -> list[str]:
    from chatcore.kafka import ensure_topics, make_admin, topic_specs
    from chatcore.settings import Settings

    settings = Settings.from_env(service_env(cfg))
    admin = make_admin(settings, client_id="chatstack-setup")
    await admin.start()
    try:
        return await ensure_topics(admin, topic_specs(settings))
    finally:
        await admin.close()


# --- PostgreSQL (FerretDB's backend) ----------------------------------------------------------


def _postgres_bin(name: str) -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise StackError("postgres: not installed; run deploy/local/install.sh")
    return found[-1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as root we drop to the Debian package's postgres user
    # with setpriv, which execs in place so the runner's process group holds the server itself.
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def _prepare_postgres_folder(cfg: StackConfig, data_dir: Path) -> None:
    """As root: the data folder outside the home, reachable and owned by the postgres user."""
    if os.geteuid() != 0:
        data_dir.mkdir(parents=True, exist_ok=True)
        return
    check_traversable(cfg.system_data.parent)
    for gone in prune_orphans(cfg.system_data, in_use=postmaster_running):
        print(f"[stack] postgres: removed {gone}, the data of a stack home that no longer exists")
    folder, stale = prepare_shared_folder(cfg.home, cfg.system_data)
    if stale:
        print(f"[stack] postgres: removed stale data in {folder} (an earlier home at this path)")
    data_dir.mkdir(exist_ok=True)
    shutil.chown(data_dir, "postgres", "postgres")
    data_dir.chmod(0o700)


def postgres_component(cfg: StackConfig) -> Component:
    data_dir = cfg.postgres_data

    def prepare() -> None:
        initdb = _postgres_bin("initdb")
        _prepare_postgres_folder(cfg, data_dir)
        if (data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            _as_postgres_user(
                [
                    str(initdb),
                    "-D",
                    str(data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            # PostgreSQL's tools chdir back to where they started: that must be reachable too.
            cwd=data_dir.parent,
        )
        if result.returncode != 0:
            raise StackError(f"postgres: initdb failed:\n{result.stdout}\n{result.stderr}")

    def ready() -> bool:
        check = subprocess.run(
            [
                str(_postgres_bin("pg_isready")),
                "-q",
                "-U",
                "postgres",
                "-h",
                "127.0.0.1",
                "-p",
                str(cfg.postgres_port),
            ],
            check=False,
        )
        return check.returncode == 0

    def after_ready() -> None:
        from deploy.local.pg_indexes import install

        try:
            install(_postgres_bin("psql"), cfg.postgres_port)
        except RuntimeError as exc:
            raise StackError(f"postgres: {exc}") from exc

    return Component(
        name="postgres",
        argv=_as_postgres_user(
            [
                str(_postgres_bin("postgres")) if _postgres_installed() else "postgres",
                "-D",
                str(data_dir),
                "-p",
                str(cfg.postgres_port),
                "-c",
                "listen_addresses=127.0.0.1",
                # Unix sockets would need a folder the postgres user may write; TCP suffices.
                "-c",
                "unix_socket_directories=",
                # FerretDB binds field names as parameters; only a custom plan can use the GIN
                # indexes of pg_indexes.py.
                "-c",
                "plan_cache_mode=force_custom_plan",
            ]
        ),
        ready=ready,
        ports=(cfg.postgres_port,),
        prepare=prepare,
        after_ready=after_ready,
        cwd=data_dir.parent,
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
        stop_signal=signal.SIGINT,
    )


def _postgres_installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


# --- FerretDB ----------------------------------------------------------------------------------


def ferretdb_component(cfg: StackConfig) -> Component:
    data_dir = cfg.data / "ferretdb"
    state_dir = cfg.data / "ferretdb-state"
    if cfg.db_backend == "sqlite":
        backend_args = ["--handler=sqlite", f"--sqlite-url=file:{data_dir}/"]
    else:
        backend_args = [
            "--handler=postgresql",
            f"--postgresql-url=postgres://postgres@127.0.0.1:{cfg.postgres_port}/postgres",
        ]

    def prepare() -> None:
        if not cfg.ferretdb_bin.exists():
            raise StackError(f"ferretdb: {cfg.ferretdb_bin} missing; run deploy/local/install.sh")
        data_dir.mkdir(parents=True, exist_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]]
        try:
            with MongoClient(
                f"mongodb://127.0.0.1:{cfg.mongo_port}/", serverSelectionTimeoutMS=1000
            ) as client:
                return bool(client.admin.command("ping").get("ok"))
        except PyMongoError:
            return False  # not listening yet, or its backend not up yet

    def after_ready() -> None:
        asyncio.run(_create_indexes(cfg))

    return Component(
        name="ferretdb",
        argv=[
            str(cfg.ferretdb_bin),
            *backend_args,
            f"--state-dir={state_dir}",
            f"--listen-addr=127.0.0.1:{cfg.mongo_port}",
            f"--debug-addr=127.0.0.1:{cfg.ferretdb_debug_port}",
            "--telemetry=disable",
            "--log-level=ERROR",
            "--log-format=json",
        ],
        ready=ready,
        ports=(cfg.mongo_port, cfg.ferretdb_debug_port),
        prepare=prepare,
        after_ready=after_ready,
    )


async def _create_indexes(cfg: StackConfig) -> None:
    from chatcore.mongo import database, ensure_indexes, make_mongo_client
    from chatcore.settings import Settings

    settings = Settings.from_env(service_env(cfg))
    client = make_mongo_client(settings)
    try:
        await ensure_indexes(database(client, settings))
    finally:
        await client.close()


# --- S3 (versitygw) ----------------------------------------------------------------------------


def s3_component(cfg: StackConfig) -> Component:
    # versitygw rejects a sidecar path that merely starts with the root's path, so use siblings.
    root = cfg.data / "s3" / "root"
    sidecar = cfg.data / "s3" / "meta"
    access, secret = _s3_credentials(cfg)

    def prepare() -> None:
        if not cfg.versitygw_bin.exists():
            raise StackError(f"s3: {cfg.versitygw_bin} missing; run deploy/local/install.sh")
        root.mkdir(parents=True, exist_ok=True)
        sidecar.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        # An S3 error document (no credentials) is an answer too: the server is up.
        return http_answers(f"http://127.0.0.1:{cfg.s3_port}/")

    def after_ready() -> None:
        from chatcore.s3 import ensure_bucket, make_s3_client
        from chatcore.settings import Settings

        settings = Settings.from_env(service_env(cfg))
        client = make_s3_client(settings)
        ensure_bucket(client, settings.s3_bucket)
        # Browsers upload with a presigned POST straight to S3 and download with a presigned
        # GET: both are cross-origin requests from the app's origins (the WebSocket allowlist).
        client.put_bucket_cors(
            Bucket=settings.s3_bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": list(settings.ws_origins),
                        "AllowedMethods": ["GET", "HEAD", "POST"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag", "Content-Length", "Content-Disposition"],
                        "MaxAgeSeconds": 600,
                    }
                ]
            },
        )

    return Component(
        name="s3",
        argv=[
            str(cfg.versitygw_bin),
            "--port",
            f"127.0.0.1:{cfg.s3_port}",
            "--region",
            "us-east-1",
            "--quiet",
            "posix",
            "--sidecar",
            str(sidecar),
            str(root),
        ],
        # The root keys travel in the environment, not argv, so `ps` does not show them.
        env={"ROOT_ACCESS_KEY": access, "ROOT_SECRET_KEY": secret},
        ready=ready,
        ports=(cfg.s3_port,),
        prepare=prepare,
        after_ready=after_ready,
    )


# --- ClamAV (clamd) ------------------------------------------------------------------------------

# The EICAR anti-virus test file (eicar.org), kept as hex so that no scanner flags this source.
EICAR_HEX = (
    "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e44415244"
    "2d414e544956495255532d544553542d46494c452124482b482a"
)


def clamd_signatures() -> str:
    """A ClamAV body-signature database (``.ndb``) holding only the EICAR test signature.

    Format ``name:target type:offset:hex body``; target 0 (any file) and offset ``*`` (anywhere).
    Production loads the real databases with freshclam instead (docs/operations.md).
    """
    return f"Chatstack.Test.EICAR:0:*:{EICAR_HEX}\n"


def clamd_ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when clamd on 127.0.0.1:port answers ``zPING`` with ``PONG``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"zPING\0")
            reply = sock.recv(64)
    except OSError:
        return False  # still loading its signatures: not listening yet
    return reply.rstrip(b"\0\n") == b"PONG"


def clamd_component(cfg: StackConfig) -> Component:
    conf_dir = cfg.home / "clamav"
    conf = conf_dir / "clamd.conf"
    db_dir = cfg.data / "clamav"
    clamd = shutil.which("clamd") or "/usr/sbin/clamd"

    def prepare() -> None:
        if not Path(clamd).exists():
            raise StackError("clamd: not installed; run deploy/local/install.sh")
        conf_dir.mkdir(parents=True, exist_ok=True)
        db_dir.mkdir(parents=True, exist_ok=True)
        # Only our own signature file: no freshclam and no network on these machines.
        (db_dir / "chatstack-test.ndb").write_text(clamd_signatures())
        conf.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"DatabaseDirectory {db_dir}",
                    f"TCPSocket {cfg.clamd_port}",
                    "TCPAddr 127.0.0.1",
                    # Attachments are at most 5 MiB; anything bigger is refused, never skipped.
                    "StreamMaxLength 10M",
                    "MaxThreads 4",
                    "ReadTimeout 30",
                    "CommandReadTimeout 10",
                    "SelfCheck 3600",
                    "Bytecode no",
                    "LogTime yes",
                    "",
                ]
            )
        )

    return Component(
        name="clamd",
        argv=[clamd, f"--config-file={conf}"],
        ready=lambda: clamd_ping(cfg.clamd_port),
        ports=(cfg.clamd_port,),
        prepare=prepare,
        ready_timeout_s=60.0,
    )


# --- nginx -------------------------------------------------------------------------------------


def _nginx_worker_paths(cfg: StackConfig) -> tuple[Path, Path]:
    """Where nginx's workers read the browser app and keep temporary files.

    As root, nginx runs its workers as `nobody`, which cannot pass through a private folder
    holding the clone or the home (a clone in /root or under `mktemp -d`): they get the home's
    shared folder (datadirs.py), with a copy of web/dist taken now (a rebuild is served from the
    next start). Otherwise the clone and the home serve as they are."""
    if os.geteuid() != 0:
        return LOCAL_WEB_ROOT, cfg.home / "nginx" / "tmp"
    check_traversable(cfg.system_data.parent)
    folder, _stale = prepare_shared_folder(cfg.home, cfg.system_data)
    web = folder / "web"
    shutil.rmtree(web, ignore_errors=True)
    if LOCAL_WEB_ROOT.is_dir():
        shutil.copytree(LOCAL_WEB_ROOT, web)
        for path in [web, *web.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    else:
        web.mkdir()
    return web, folder / "nginx-tmp"


def nginx_component(cfg: StackConfig) -> Component:
    prefix = cfg.home / "nginx"
    conf = prefix / "nginx.conf"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    def prepare() -> None:
        if not Path(nginx).exists():
            raise StackError("nginx: not installed; run deploy/local/install.sh")
        prefix.mkdir(parents=True, exist_ok=True)
        web_root, temp_dir = _nginx_worker_paths(cfg)
        temp_dir.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            render_nginx_conf(
                listen=f"127.0.0.1:{cfg.nginx_port}",
                prefix=prefix,
                log_dir=cfg.home / "logs",
                routes=chat_routes(
                    relay_ports=cfg.relay_ports,
                    auth_ports=cfg.auth_ports,
                    management_ports=cfg.management_ports,
                ),
                limits=cfg.edge_limits,
                s3_origin=service_env(cfg)["CHAT_S3_ENDPOINT"],
                web_root=web_root,
                temp_dir=temp_dir,
            )
        )
        check = subprocess.run(
            [nginx, "-t", "-q", "-p", str(prefix), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise StackError(f"nginx: generated config {conf} is invalid:\n{check.stderr}")

    def ready() -> bool:
        return http_ok(f"http://127.0.0.1:{cfg.nginx_port}/healthz", timeout_s=1)

    return Component(
        name="nginx",
        argv=[nginx, "-p", str(prefix), "-c", str(conf)],
        ready=ready,
        ports=(cfg.nginx_port,),
        prepare=prepare,
    )


# --- Python services ---------------------------------------------------------------------------


def python_service_component(
    cfg: StackConfig,
    name: str,
    module: str,
    port: int,
    *,
    extra_env: dict[str, str] | None = None,
    ports: tuple[int, ...] = (),
) -> Component:
    """One of our services, run from the virtualenv; ready when its ``/readyz`` answers 200."""
    env = {**service_env(cfg), "PYTHONUNBUFFERED": "1", **(extra_env or {})}

    return Component(
        name=name,
        argv=[sys.executable, "-m", module],
        env=env,
        cwd=REPO,
        # 503 while a dependency (Kafka, the database, a controller stream) is not up yet.
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
        ports=(port, *ports),
        ready_timeout_s=30.0,
    )
