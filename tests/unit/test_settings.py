"""Settings from the environment: parsing, errors that name the variable, documentation."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from chatcore.settings import ConfigError, Settings
from chatcore.settings_bounds import BOUNDS, Bound

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    """Each CHAT_* variable the code reads appears in docs/configuration.md."""
    text = DOCS.read_text()
    missing = [f.name for f in fields(Settings) if f"CHAT_{f.name.upper()}" not in text]
    assert missing == []


def test_values_are_parsed_by_type() -> None:
    """Integers, floats and comma-separated lists come out typed; unset ones keep defaults."""
    settings = Settings.from_env(
        {
            "CHAT_KAFKA_LINGER_MS": "7",
            "CHAT_JWT_LEEWAY_S": "2.5",
            "CHAT_CONTROLLER_ADDRS": "a:1, b:2,",
        }
    )
    assert settings.kafka_linger_ms == 7
    assert settings.jwt_leeway_s == 2.5
    assert settings.controller_addrs == ("a:1", "b:2")
    assert settings.mongo_db == Settings().mongo_db


def test_malformed_value_names_the_variable() -> None:
    """A bad value stops start-up with a message naming the variable to fix."""
    with pytest.raises(ConfigError, match="CHAT_KAFKA_LINGER_MS"):
        Settings.from_env({"CHAT_KAFKA_LINGER_MS": "soon"})
    with pytest.raises(ConfigError, match="CHAT_CONTROLLER_ADDRS"):
        Settings.from_env({"CHAT_CONTROLLER_ADDRS": ""})
    with pytest.raises(ConfigError, match="CHAT_RELAY_ID"):
        Settings.from_env({"CHAT_RELAY_ID": "relay one"})


def test_a_daily_attachment_quota_below_one_file_is_refused() -> None:
    """A quota smaller than the largest file would refuse such files for good: start-up stops."""
    with pytest.raises(ConfigError, match="CHAT_ATTACHMENT_BYTES_PER_USER_DAY"):
        Settings.from_env({"CHAT_ATTACHMENT_BYTES_PER_USER_DAY": "1048576"})
    quota = Settings.from_env({"CHAT_ATTACHMENT_BYTES_PER_USER_DAY": "5242880"})
    assert quota.attachment_bytes_per_user_day == quota.attachment_max_bytes


def test_to_env_round_trips_and_secrets_stay_out_of_repr() -> None:
    """to_env rebuilds the same settings; the S3 secret never shows in repr."""
    settings = Settings.from_env({"CHAT_S3_SECRET_KEY": "very-secret-value"})
    assert Settings.from_env(settings.to_env()) == settings
    assert "very-secret-value" not in repr(settings)


NUMERIC = [f.name for f in fields(Settings) if str(f.type) in ("int", "float")]


def _doc_row(variable: str) -> str:
    rows = [line for line in DOCS.read_text().splitlines() if f"`{variable}`" in line]
    assert rows, f"{variable} has no row in docs/configuration.md"
    return rows[0]


def test_every_number_has_a_range() -> None:
    """Each numeric setting has a bound in chatcore.settings_bounds, and every bound a setting."""
    assert sorted(set(NUMERIC) - BOUNDS.keys()) == []
    assert sorted(BOUNDS.keys() - set(NUMERIC)) == []


def test_every_range_is_documented() -> None:
    """docs/configuration.md states each numeric variable's range in its row, as the code has it."""
    undocumented = [
        f"CHAT_{name.upper()}: {bound.text()}"
        for name, bound in BOUNDS.items()
        if bound.text() not in _doc_row(f"CHAT_{name.upper()}")
    ]
    assert undocumented == []


def test_defaults_are_inside_their_ranges() -> None:
    """The built-in defaults pass the same checks a deployment's values do."""
    Settings().validate()


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CHAT_WS_MAX_CONNECTIONS_PER_USER", "0", "at least 1, got 0"),
        ("CHAT_WS_HEARTBEAT_S", "0", "between 1 and 300, got 0"),
        ("CHAT_AUTH_PORT", "70000", "between 0 and 65535, got 70000"),
        ("CHAT_DRAIN_TIMEOUT_S", "-1", "zero or more, got -1"),
        ("CHAT_JWT_LEEWAY_S", "-5", "between 0 and 300, got -5"),
        ("CHAT_RELAY_SUBSCRIBE_TIMEOUT_S", "0", "positive and at most 30, got 0"),
        ("CHAT_LOGIN_IP_PER_MINUTE", "0", "positive, got 0"),
        ("CHAT_ARGON2_TIME_COST", "0", "at least 1, got 0"),
        ("CHAT_CONTROLLER_ANNOUNCE_INTERVAL_S", "0.05", "between 0.1 and 60, got 0.05"),
        ("CHAT_LOG_LEVEL", "verbose", "one of debug, info, warning, error, critical"),
        ("CHAT_CONTROLLER_ADVERTISE_ADDR", "nohostport", "host:port"),
    ],
)
def test_out_of_range_values_stop_start_up(variable: str, value: str, said: str) -> None:
    """A value outside its range stops start-up with the variable, the range and the value."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({variable: value})
    assert str(refused.value).startswith(variable)
    assert said in str(refused.value)


def test_range_edges_are_accepted() -> None:
    """Both ends of a closed range and 0 for a port (any free port) are accepted."""
    settings = Settings.from_env(
        {
            "CHAT_WS_HEARTBEAT_S": "1",
            "CHAT_PRESENCE_GRACE_S": "30",
            "CHAT_AUTH_PORT": "0",
            "CHAT_RELAY_SUBSCRIBE_TIMEOUT_S": "30",
            "CHAT_LOG_LEVEL": "WARNING",
            "CHAT_CONTROLLER_ADVERTISE_ADDR": "[::1]:50051",
        }
    )
    assert (settings.ws_heartbeat_s, settings.presence_grace_s, settings.auth_port) == (1, 30, 0)


@pytest.mark.parametrize(
    ("bound", "text"),
    [
        (Bound(1, 60), "1\u201360"),
        (Bound(1), "≥ 1"),
        (Bound(0, low_open=True), "> 0"),
        (Bound(0, 30, low_open=True), "> 0, ≤ 30"),
        (Bound(0.1, 60), "0.1\u201360"),
    ],
)
def test_bound_text(bound: Bound, text: str) -> None:
    """A range reads the way docs/configuration.md writes it."""
    assert bound.text() == text


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CHAT_DRAIN_TIMEOUT_S", "inf", "CHAT_DRAIN_TIMEOUT_S must be a finite number"),
        ("CHAT_JWKS_CACHE_S", "nan", "CHAT_JWKS_CACHE_S must be a finite number"),
        (
            "CHAT_JWT_ALGORITHMS",
            "HS256",
            "CHAT_JWT_ALGORITHMS must name one or more of ES256, EdDSA",
        ),
        ("CHAT_JWT_ALGORITHMS", "EdDSA,none", "CHAT_JWT_ALGORITHMS must name"),
        ("CHAT_HTTP_HOST", " ", "CHAT_HTTP_HOST must not be empty"),
        ("CHAT_KAFKA_BOOTSTRAP", "", "CHAT_KAFKA_BOOTSTRAP must not be empty"),
        ("CHAT_MONGO_DB", "", "CHAT_MONGO_DB must not be empty"),
        ("CHAT_JWT_ISSUER", "", "CHAT_JWT_ISSUER must not be empty"),
        ("CHAT_JWT_AUDIENCE", "", "CHAT_JWT_AUDIENCE must not be empty"),
        ("CHAT_MONGO_URL", "localhost:27017", "CHAT_MONGO_URL must be a mongodb://"),
        ("CHAT_JWKS_URL", "auth:8101/v1/auth/jwks", "CHAT_JWKS_URL must be an http://"),
        ("CHAT_S3_ENDPOINT", "", "CHAT_S3_ENDPOINT must be an http://"),
        ("CHAT_TRUSTED_PROXIES", "127.0.0.1,ngnix", "CHAT_TRUSTED_PROXIES: 'ngnix' is not an IP"),
    ],
)
def test_values_that_would_fail_later_or_silently_stop_start_up(
    variable: str, value: str, said: str
) -> None:
    """Infinite times, algorithms no key verifies, empty hosts and names, URLs without a scheme
    and proxies that are not addresses are refused at start-up, naming the variable, instead of
    binding every interface, failing at the first connection, or trusting nobody."""
    with pytest.raises(ConfigError, match=re.escape(said)):
        Settings.from_env({variable: value})


def test_trusted_proxies_may_be_networks() -> None:
    """CIDR ranges and IPv6 addresses are accepted as trusted proxies."""
    settings = Settings.from_env({"CHAT_TRUSTED_PROXIES": "10.0.0.0/8, ::1, 172.28.0.10"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1", "172.28.0.10")
