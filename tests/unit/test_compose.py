"""deploy/compose checked against the code: services, settings, ports, health checks, nginx routes.

No Docker engine runs here: compose.yaml is parsed and every name, port and ``CHAT_*`` variable is
checked against what the code reads. ``docker compose config`` runs too when the docker client has
the compose plugin (the test says so when it is skipped).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chatcore.settings import Settings
from deploy.local.nginx import (
    PRODUCTION_CONF,
    PRODUCTION_ROUTES,
    PRODUCTION_WEB_ROOT,
    render_production_conf,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
MINIO_INIT = COMPOSE_DIR / "minio-init.sh"

PYTHON_SERVICES = {
    "auth": "services.auth",
    "management": "services.management",
    "controller": "services.controller",
    "relay": "services.relay",
}
EXPECTED = {
    *PYTHON_SERVICES,
    "controller-2",
    "kafka",
    "kafka-2",
    "kafka-3",
    "kafka-init",
    "mongo",
    "mongo-2",
    "mongo-3",
    "mongo-init",
    "minio",
    "minio-init",
    "clamd",
    "nginx",
}
ONE_SHOT = {"kafka-init", "mongo-init", "minio-init"}
# Secrets .env must provide (empty in .env.example) and who may see each.
SECRET_VARS = {
    "MINIO_ROOT_USER": {"minio", "minio-init"},
    "MINIO_ROOT_PASSWORD": {"minio", "minio-init"},
    "MINIO_APP_ACCESS_KEY": {"minio-init", "management"},
    "MINIO_APP_SECRET_KEY": {"minio-init", "management"},
    "MONGO_APP_PASSWORD": {"mongo-init", "auth", "management", "controller", "controller-2"},
    "CHAT_INTERNAL_TOKEN": {"controller", "controller-2", "relay"},
}
SETTING_NAMES = {f"CHAT_{f.name.upper()}" for f in dataclasses.fields(Settings)}
DEFAULTS = Settings()
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# Stand-ins for the secrets .env.example leaves empty on purpose.
_DUMMY = {
    "KAFKA_CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk",
    "MINIO_ROOT_USER": "minio-root",
    "MINIO_ROOT_PASSWORD": "not-a-real-password",
    "MINIO_APP_ACCESS_KEY": "chat-app",
    "MINIO_APP_SECRET_KEY": "not-a-real-app-secret",
    "MONGO_APP_PASSWORD": "not-a-real-db-password",
    "CHAT_INTERNAL_TOKEN": "not-a-real-internal-token",
}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _interpolate(value: str, env: dict[str, str]) -> str:
    """compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (``$$`` is a literal $)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if op in (":-", "-"):
            return current or arg
        if op in (":?", "?") and not current:
            raise AssertionError(f"{name} is required: {arg}")
        return current

    return _VAR.sub(one, value).replace("$$", "$")


def _resolved_env() -> dict[str, str]:
    env = _env_example()
    return {**env, **{k: v for k, v in _DUMMY.items() if not env.get(k)}}


def _container_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping"
    return {str(k): _interpolate(str(v), _resolved_env()) for k, v in env.items()}


def _health_port(service: dict[str, Any]) -> int:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", test)
    assert match, test
    return int(match.group(1))


def test_every_service_is_defined() -> None:
    """compose.yaml defines exactly the infrastructure, the four services and nginx."""
    assert set(_services()) == EXPECTED


def test_python_services_run_their_module_from_one_image() -> None:
    """Each Python service runs ``python -m services.<name>`` from the one Dockerfile build."""
    services = _services()
    for name, module in PYTHON_SERVICES.items():
        svc = services[name]
        assert svc["command"] == ["python", "-m", module]
        assert svc["build"] == {"context": "../..", "dockerfile": "deploy/compose/Dockerfile"}
        assert svc["image"] == services["auth"]["image"]


def test_every_chat_variable_is_a_setting() -> None:
    """Every CHAT_* in a container environment or in .env.example is a real Settings field."""
    used = set(_env_example()) | {m.group(1) for m in _VAR.finditer(COMPOSE.read_text())}
    for svc in _services().values():
        used |= set(svc.get("environment") or {})
    chat = {name for name in used if name.startswith("CHAT_")}
    assert chat, "no CHAT_ variables found"
    assert chat <= SETTING_NAMES, sorted(chat - SETTING_NAMES)


def test_every_interpolated_variable_is_in_env_example() -> None:
    """Each ${VAR} that compose.yaml reads is documented in .env.example, and nothing extra."""
    referenced = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text())}
    listed = set(_env_example())
    assert referenced == listed, (sorted(referenced - listed), sorted(listed - referenced))


def test_third_party_images_are_pinned_and_pullable_without_login() -> None:
    """MinIO comes from quay.io at a fixed release: Docker Hub stopped serving minio/* in
    September 2026 (pulls fail as "pull access denied"), and a floating tag there is gone too."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    minio = {name: s["image"] for name, s in services.items() if "minio" in str(s.get("image"))}
    assert minio, "no MinIO service"
    for name, image in minio.items():
        assert image.startswith("quay.io/minio/"), (name, image)
        assert ":RELEASE." in image, (name, image)


def test_env_example_values_are_the_compose_defaults() -> None:
    """A value .env.example sets is the default compose.yaml falls back to, so copying it changes
    nothing the docs describe (a partition count differing from the guide's is fixed for good)."""
    example = _env_example()
    defaults = {
        m.group(1): m.group(3)
        for m in _VAR.finditer(COMPOSE.read_text())
        if m.group(2) in (":-", "-")
    }
    differing = {
        name: (example[name], default)
        for name, default in defaults.items()
        if example.get(name) and example[name] != default
    }
    assert differing == {}


def test_service_environments_build_valid_settings() -> None:
    """Each Python service's environment (defaults from .env.example) passes Settings validation."""
    services = _services()
    for name in PYTHON_SERVICES:
        env = _container_env(services[name])
        settings = Settings.from_env(env)
        assert settings.http_host == "0.0.0.0"  # noqa: S104 - inside a container
        assert settings.kafka_bootstrap == "kafka:9092,kafka-2:9092,kafka-3:9092"
        assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
        if name != "relay":  # the relay reaches the database only through controllers
            url = urlsplit(settings.mongo_url)
            assert url.netloc.split("@")[1] == "mongo:27017,mongo-2:27017,mongo-3:27017"
            assert "replicaSet=rs0" in url.query
        assert settings.s3_endpoint == "http://minio:9000"
        assert settings.controller_addrs == (f"controller:{DEFAULTS.controller_grpc_port}",)
        assert urlsplit(settings.jwks_url).netloc == f"auth:{DEFAULTS.auth_port}"
        assert urlsplit(settings.auth_url).netloc == f"auth:{DEFAULTS.auth_port}"
        assert settings.trusted_proxies == (_resolved_env()["STACK_NGINX_IP"],)
    auth = Settings.from_env(_container_env(services["auth"]))
    assert auth.auth_signing_keys == ("/run/secrets/jwt_signing_key",)
    assert services["auth"]["secrets"] == ["jwt_signing_key"]


def test_ports_match_settings_defaults() -> None:
    """Listen ports, exposed ports and health-check ports are the Settings defaults."""
    services = _services()
    expected = {
        "auth": [DEFAULTS.auth_port],
        "management": [DEFAULTS.management_port],
        "controller": [DEFAULTS.controller_grpc_port, DEFAULTS.controller_http_port],
        "relay": [DEFAULTS.relay_port],
    }
    health = {
        "auth": DEFAULTS.auth_port,
        "management": DEFAULTS.management_port,
        "controller": DEFAULTS.controller_http_port,
        "relay": DEFAULTS.relay_port,
    }
    for name, ports in expected.items():
        svc = services[name]
        assert [int(p) for p in svc["expose"]] == ports, name
        assert _health_port(svc) == health[name], name
        env = Settings.from_env(_container_env(svc))
        assert (env.auth_port, env.management_port, env.relay_port) == (
            DEFAULTS.auth_port,
            DEFAULTS.management_port,
            DEFAULTS.relay_port,
        )
        assert (env.controller_grpc_port, env.controller_http_port) == (
            DEFAULTS.controller_grpc_port,
            DEFAULTS.controller_http_port,
        )


def test_relay_scales_without_fixed_host_port() -> None:
    """The relay publishes no host port and has no fixed name or id, so --scale relay=N works."""
    relay = _services()["relay"]
    assert "ports" not in relay
    assert "container_name" not in relay
    assert "CHAT_RELAY_ID" not in relay["environment"]


def test_long_running_services_have_health_checks() -> None:
    """Every long-running service has a health check; one-shot init jobs gate their dependants."""
    services = _services()
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc["restart"] == "no", name
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond == {"condition": expected}, (name, dep)


def test_nginx_routes_point_at_compose_services_and_ports() -> None:
    """Every upstream in the production nginx config is a compose service on its settings port."""
    services = _services()
    port_of = {
        "auth": DEFAULTS.auth_port,
        "management": DEFAULTS.management_port,
        "relay": DEFAULTS.relay_port,
    }
    for route in PRODUCTION_ROUTES:
        assert route.host in services, route
        assert list(route.ports) == [port_of[route.host]], route
        assert str(route.ports[0]) in services[route.host]["expose"]
    text = PRODUCTION_CONF.read_text()
    hosts = set(re.findall(r"^\s*server ([a-z][a-z0-9-]*):\d+", text, re.MULTILINE))
    assert hosts == {r.host for r in PRODUCTION_ROUTES}
    nginx = services["nginx"]
    # Mounted as a template: the image's entrypoint writes /etc/nginx/nginx.conf from it,
    # substituting only the S3 origin of the app's Content-Security-Policy.
    assert "../nginx/nginx.conf:/etc/nginx/templates/nginx.conf.template:ro" in nginx["volumes"]
    assert nginx["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert nginx["environment"]["NGINX_ENVSUBST_FILTER"] == "CHAT_S3_PUBLIC_ENDPOINT"
    assert "CHAT_S3_PUBLIC_ENDPOINT" in nginx["environment"]
    assert nginx["command"] == ["nginx", "-c", "/etc/nginx/nginx.conf"]


def test_nginx_image_builds_the_web_app_into_the_configured_root() -> None:
    """Dockerfile.nginx builds web/ with npm ci + vite and copies it where nginx.conf's root is."""
    nginx = _services()["nginx"]
    assert nginx["build"] == {"context": "../..", "dockerfile": "deploy/compose/Dockerfile.nginx"}
    text = (DOCKERFILE.parent / "Dockerfile.nginx").read_text()
    assert "npm ci" in text
    assert "npm run build" in text
    assert f"COPY --from=web /web/dist {PRODUCTION_WEB_ROOT}" in text
    assert f"    root {PRODUCTION_WEB_ROOT};" in PRODUCTION_CONF.read_text()


def test_production_nginx_conf_is_the_template_rendering() -> None:
    """deploy/nginx/nginx.conf is exactly what the shared template renders (not stale)."""
    assert PRODUCTION_CONF.read_text() == render_production_conf()
    text = PRODUCTION_CONF.read_text()
    directives = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in directives if "$request_uri" in line or "$args" in line]
    assert '"uri":"$uri"' in text
    assert "least_conn;" in text
    assert "listen 8443 ssl;" in text  # the TLS example


def test_dockerfile_is_multi_stage_generates_protos_and_runs_unprivileged() -> None:
    """One multi-stage Dockerfile: venv from pyproject, protoc at build time, a non-root user."""
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    assert "pyproject.toml" in text
    assert "grpc_tools.protoc" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")


def test_docker_compose_config(tmp_path: Path) -> None:
    """``docker compose config`` accepts the file (skipped when the compose plugin is absent)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker client absent: compose.yaml was checked by parsing only")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(
            "docker client has no compose plugin (`docker compose version` failed): "
            "compose.yaml was checked by parsing only"
        )
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in _resolved_env().items()))
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _secret_refs(service: dict[str, Any]) -> set[str]:
    text = yaml.safe_dump(service.get("environment") or {})
    return {m.group(1) for m in _VAR.finditer(text)} & SECRET_VARS.keys()


def test_secrets_reach_only_the_services_that_use_them() -> None:
    """Root credentials stay with MinIO/MongoDB and their init jobs; each secret goes where used."""
    services = _services()
    for name, svc in services.items():
        for var in _secret_refs(svc):
            assert name in SECRET_VARS[var], f"{name} gets {var}"
    for var, users in SECRET_VARS.items():
        for name in users:
            assert var in _secret_refs(services[name]), f"{name} lacks {var}"
        # Required: compose refuses to start without it, never falls back to a default.
        assert re.search(rf"\$\{{{var}:\?", COMPOSE.read_text()), var
        assert _env_example()[var] == "", f"{var} has a value in .env.example"
    for name in PYTHON_SERVICES:
        assert "mongo_root_password" not in (services[name].get("secrets") or [])


def test_services_use_minio_through_a_bucket_scoped_user() -> None:
    """management's S3 keys are MINIO_APP_*; minio-init limits that user to the bucket's objects."""
    services = _services()
    env = _container_env(services["management"])
    assert env["CHAT_S3_ACCESS_KEY"] == _DUMMY["MINIO_APP_ACCESS_KEY"]
    assert env["CHAT_S3_SECRET_KEY"] == _DUMMY["MINIO_APP_SECRET_KEY"]
    assert env["CHAT_S3_ACCESS_KEY"] != _DUMMY["MINIO_ROOT_USER"]
    for name in ("auth", "controller", "relay"):
        assert "CHAT_S3_ACCESS_KEY" not in services[name]["environment"], name
    init = services["minio-init"]
    assert "./minio-init.sh:/chat/minio-init.sh:ro" in init["volumes"]
    assert init["entrypoint"] == ["/bin/sh", "/chat/minio-init.sh"]
    script = MINIO_INIT.read_text()
    rules = dict(re.findall(r"^(BUCKET_RULE|OBJECT_RULE)='(.*)'$", script, re.MULTILINE))
    bucket = _resolved_env()["CHAT_S3_BUCKET"]
    statements = [
        json.loads(rules[k].replace("%s", bucket)) for k in ("BUCKET_RULE", "OBJECT_RULE")
    ]
    resources = {r for s in statements for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
    assert {s["Effect"] for s in statements} == {"Allow"}
    assert 'mc admin user add chat "$MINIO_APP_ACCESS_KEY" "$MINIO_APP_SECRET_KEY"' in script
    assert 'mc admin policy attach chat "$POLICY" --user "$MINIO_APP_ACCESS_KEY"' in script
    assert "mc anonymous set none" in script


def test_mongo_runs_with_auth_and_services_use_the_app_user() -> None:
    """mongod has access control (key file, root from a secret); services log in as the app user."""
    services = _services()
    mongo = services["mongo"]
    command = mongo["command"]
    assert command[:3] == ["mongod", "--replSet", "rs0"]
    assert command[command.index("--keyFile") + 1] == "/data/keyfile"
    assert "/run/secrets/mongo_keyfile /data/keyfile" in " ".join(mongo["entrypoint"])
    env = _container_env(mongo)
    assert env["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo_root_password"
    assert "MONGO_INITDB_ROOT_PASSWORD" not in env
    assert set(mongo["secrets"]) == {"mongo_root_password", "mongo_keyfile"}
    secrets = _compose()["secrets"]
    assert {"mongo_root_password", "mongo_keyfile", "jwt_signing_key"} <= secrets.keys()
    init = services["mongo-init"]
    script = init["command"][-1]
    assert 'fs.readFileSync("/run/secrets/mongo_root_password"' in script
    assert 'roles = [{role: "readWrite", db: env.CHAT_MONGO_DB}]' in script
    assert "chat.createUser(" in script
    assert "chat.updateUser(" in script
    resolved = _resolved_env()
    for name in ("auth", "management", "controller"):
        url = urlsplit(Settings.from_env(_container_env(services[name])).mongo_url)
        assert url.username == resolved["MONGO_APP_USER"] != resolved["MONGO_ROOT_USER"]
        assert url.password == _DUMMY["MONGO_APP_PASSWORD"]
        assert f"authSource={resolved['CHAT_MONGO_DB']}" in url.query.split("&")


def test_internal_token_reaches_relays_and_controllers_only() -> None:
    """CHAT_INTERNAL_TOKEN: the same required value for relays and controllers, nobody else."""
    services = _services()
    tokens = {
        name: Settings.from_env(_container_env(services[name])).internal_token
        for name in PYTHON_SERVICES
    }
    assert tokens["relay"] == tokens["controller"] == _DUMMY["CHAT_INTERNAL_TOKEN"]
    assert tokens["auth"] == tokens["management"] == ""
    second = Settings.from_env(_container_env(services["controller-2"])).internal_token
    assert second == tokens["controller"]


def test_production_shape_three_brokers_three_mongo_members_two_of_each_service() -> None:
    """Kafka: three voters, replication 3 with min ISR 2; MongoDB: three members; controllers
    announce distinct addresses; management and auth run two replicas each."""
    services = _services()
    voters = "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    for i, name in enumerate(("kafka", "kafka-2", "kafka-3"), start=1):
        env = services[name]["environment"]
        assert (env["KAFKA_NODE_ID"], env["KAFKA_CONTROLLER_QUORUM_VOTERS"]) == (i, voters)
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
    assert "mongo-3:27017" in services["mongo-init"]["command"][-1]
    advertised = {
        Settings.from_env(_container_env(services[n])).controller_advertise_addr
        for n in ("controller", "controller-2")
    }
    assert advertised == {"controller:50051", "controller-2:50051"}
    assert services["management"]["deploy"]["replicas"] == 2
    assert services["auth"]["deploy"]["replicas"] == 2


def test_compose_secrets_are_never_committed() -> None:
    """The filled-in .env and the secrets folder are git-ignored; only their templates are kept."""
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/deploy/compose/.env" in ignored
    assert (COMPOSE_DIR / "secrets" / ".gitignore").read_text().split() == [
        "*",
        "!.gitignore",
        "!README.md",
    ]


def test_clamd_shares_a_network_with_management_alone() -> None:
    """clamd parses every upload: it reaches management over an internal network and nothing
    that holds data (Kafka, MongoDB, MinIO) on any network."""
    services = _services()
    networks = _compose()["networks"]

    def on(name: str) -> set[str]:
        found = services[name].get("networks") or []
        return set(found if isinstance(found, list) else dict(found))

    clamd = on("clamd")
    assert "chat" not in clamd
    assert networks["scan"].get("internal") is True
    sharing = {name for name in services if name != "clamd" and on(name) & clamd}
    assert sharing == {"management"}
    assert on("management") >= {"chat", "scan"}
