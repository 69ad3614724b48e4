"""Settings from the environment: parsing, errors that name the variable, documentation."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from chatcore.settings import ConfigError, Settings

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


def test_to_env_round_trips_and_secrets_stay_out_of_repr() -> None:
    """to_env rebuilds the same settings; the S3 secret never shows in repr."""
    settings = Settings.from_env({"CHAT_S3_SECRET_KEY": "very-secret-value"})
    assert Settings.from_env(settings.to_env()) == settings
    assert "very-secret-value" not in repr(settings)
