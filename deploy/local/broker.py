"""The local stack's Kafka: KRaft brokers from the Maven Central jars ``install.sh`` caches, their
``server.properties``, and the topics created once the last broker is ready."""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
from pathlib import Path

from deploy.local.config import (
    REPO,
    StackConfig,
    instance_name,
    service_env,
)
from deploy.local.processes import Component, StackError, port_open


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
